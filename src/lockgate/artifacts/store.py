"""An environment's artifact store: buckets, and blobs addressed by their SHA-256.

Every read of a blob verifies its digest, so a blob changed on disk is refused instead of
silently used. Writes go to a temporary name first and are renamed into place. On a local
filesystem the data and the new directory entries are also flushed to disk (``fsync``) before
a write returns, because a pipeline step is reported succeeded only once its outputs are stored
durably: a power cut must not leave a recorded digest pointing at nothing.

A folder (a ``Dataset`` or a ``Model``) is stored as a *tree*: one blob per file, and a manifest
blob listing them — a JSON list of ``{"path", "digest", "size"}`` sorted by path. The tree's
digest is the manifest's digest, so equal folders get equal digests. Empty sub-folders are not
kept.

Blob I/O on ``file://`` stores uses the operating system directly rather than fsspec: it is
what makes the fsync possible, and it keeps fsspec's import (≈0.15 s) out of step processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urlsplit

from lockgate.backends import artifact_backends, build, scheme_of
from lockgate.errors import IntegrityError, LockgateError, NotFoundError, ValidationError
from lockgate.ids import new_id

BLOBS = "blobs"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArtifactStore:
    """The artifact store at ``url`` (``file://…`` or ``s3://…``); cheap to create, so a step
    process makes its own from the URL in its task."""

    url: str

    @cached_property
    def _fs_root(self) -> tuple[Any, str]:
        return build(self.url, artifact_backends(), "artifact store")  # type: ignore[no-any-return]

    @cached_property
    def _local_root(self) -> str | None:
        """The store's folder when it is on a local filesystem (``file://``), else None."""
        if scheme_of(self.url) != "file":
            return None
        return urlsplit(self.url).path.rstrip("/") or "/"

    @property
    def fs(self) -> Any:
        return self._fs_root[0]

    @property
    def root(self) -> str:
        local = self._local_root
        return local if local is not None else self._fs_root[1]

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def exists(self, *parts: str) -> bool:
        return bool(self.fs.isdir(self.path(*parts)))

    def ensure(self, *parts: str) -> None:
        self.fs.makedirs(self.path(*parts), exist_ok=True)

    def files_in(self, *parts: str) -> list[str]:
        """Every file below ``parts`` (relative paths), sorted."""
        base = self.path(*parts)
        if not self.fs.isdir(base):
            return []
        return sorted(p[len(base) + 1 :] for p in self.fs.find(base))

    def remove(self, *parts: str) -> None:
        if self.fs.exists(self.path(*parts)):
            self.fs.rm(self.path(*parts), recursive=True)

    # ------------------------------------------------------------------ blobs

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` once, by content; returns its ``sha256:`` digest.

        On a local store the blob is on disk (fsynced, and so is its folder) when this returns.
        """
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self._write_blob(digest, lambda handle: handle.write(data))
        return digest

    def get_bytes(self, digest: str) -> bytes:
        """The blob ``digest``, after checking that its content still has that digest."""
        with self._open_blob(digest) as handle:
            data: bytes = handle.read()
        _check(digest, "sha256:" + hashlib.sha256(data).hexdigest())
        return data

    # ------------------------------------------------------------------ trees

    def put_tree(self, local_dir: Path) -> str:
        """Store every file below ``local_dir`` and its manifest; returns the manifest's digest.

        Files are streamed (a model may not fit in memory twice). A file that changes while it
        is being stored is refused rather than stored under the wrong digest.
        """
        root = Path(local_dir)
        if not root.is_dir():
            raise NotFoundError(f"{root} is not a folder, so it cannot be stored as a tree.")
        entries: list[dict[str, Any]] = []
        for path in _files_below(root):
            digest, size = self._put_file(path)
            entries.append(
                {"path": path.relative_to(root).as_posix(), "digest": digest, "size": size}
            )
        entries.sort(key=lambda entry: str(entry["path"]))
        return self.put_bytes(json.dumps(entries, sort_keys=True).encode())

    def get_tree(self, digest: str, dest: Path) -> Path:
        """Write the tree ``digest`` under ``dest`` (created if needed) and return ``dest``.

        The manifest and every file are checked against their digests. Every path is checked
        before anything is written, so a manifest naming a path outside ``dest`` (absolute, with
        ``..``, or through a link) writes nothing.
        """
        entries = self._manifest(digest)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        base = dest.resolve()
        targets = [(_inside(base, entry["path"], digest), entry) for entry in entries]
        for target, entry in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._read_blob_to(entry["digest"], entry["size"], target)
        return dest

    def tree_paths(self, digest: str) -> list[str]:
        """The relative paths of the files in tree ``digest`` (its manifest, verified)."""
        return [str(entry["path"]) for entry in self._manifest(digest)]

    def tree_file(self, digest: str, path: str) -> bytes | None:
        """One file of tree ``digest``, verified; None when the tree has no such file."""
        for entry in self._manifest(digest):
            if entry["path"] == path:
                return self.get_bytes(entry["digest"])
        return None

    def has_tree(self, digest: str) -> bool:
        """Whether the tree's manifest and every blob it names are present (without reading
        the files: a cheap check, as before reusing a cached output; loads still verify)."""
        try:
            entries = self._manifest(digest)
        except LockgateError:
            return False
        return all(self.fs.exists(self._blob_path(entry["digest"])) for entry in entries)

    # ------------------------------------------------------------------ internals

    def _blob_path(self, digest: str) -> str:
        algo, _, hexdigest = digest.partition(":")
        if (
            algo != "sha256"
            or len(hexdigest) != 64
            or not all(c in "0123456789abcdef" for c in hexdigest)
        ):
            raise NotFoundError(f"{digest!r} is not a sha256 artifact digest.")
        return self.path(BLOBS, hexdigest[:2], hexdigest)

    def _write_blob(self, digest: str, write: Callable[[IO[bytes]], object]) -> None:
        """Create blob ``digest`` with ``write`` unless it exists: temporary name, then rename."""
        target = self._blob_path(digest)
        folder = target.rsplit("/", 1)[0]
        if self._local_root is None:
            if not self.fs.exists(target):
                self.fs.makedirs(folder, exist_ok=True)
                tmp = f"{target}.{new_id()}.tmp"
                with self.fs.open(tmp, "wb") as handle:
                    write(handle)
                self.fs.mv(tmp, target)
            return
        if os.path.exists(target):
            return
        _make_dirs_durable(folder)
        tmp = f"{target}.{secrets.token_hex(8)}.tmp"
        try:
            with open(tmp, "xb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(folder)

    @contextmanager
    def _open_blob(self, digest: str) -> Iterator[IO[bytes]]:
        target = self._blob_path(digest)
        try:
            if self._local_root is not None:
                handle: IO[bytes] = open(target, "rb")  # noqa: SIM115 (closed below)
            elif self.fs.exists(target):
                handle = self.fs.open(target, "rb")
            else:
                raise FileNotFoundError(target)
        except FileNotFoundError:
            raise NotFoundError(f"artifact {digest} is not in {self.url}.") from None
        with handle:
            yield handle

    def _put_file(self, path: Path) -> tuple[str, int]:
        with open(path, "rb") as source:
            digest = "sha256:" + hashlib.file_digest(source, "sha256").hexdigest()
            size = source.tell()

        def copy(handle: IO[bytes]) -> None:
            hasher = hashlib.sha256()
            with open(path, "rb") as again:
                while chunk := again.read(_CHUNK):
                    hasher.update(chunk)
                    handle.write(chunk)
            if "sha256:" + hasher.hexdigest() != digest:
                raise IntegrityError(
                    f"{path} changed while it was being stored.",
                    hint="Do not write to a step's output folder after the step returns it.",
                )

        self._write_blob(digest, copy)
        return digest, size

    def _read_blob_to(self, digest: str, size: int, target: Path) -> None:
        """Stream blob ``digest`` to ``target``, verifying it before the file takes its name."""
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        hasher = hashlib.sha256()
        try:
            with self._open_blob(digest) as source, open(tmp, "wb") as out:
                while chunk := source.read(_CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
                written = out.tell()
            _check(digest, "sha256:" + hasher.hexdigest())
            if written != size:
                raise IntegrityError(
                    f"artifact {digest} has {written} bytes; its tree says {size}."
                )
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _manifest(self, digest: str) -> list[dict[str, Any]]:
        try:
            entries = json.loads(self.get_bytes(digest))
        except ValueError:
            entries = None
        if not isinstance(entries, list) or not all(
            isinstance(e, dict)
            and isinstance(e.get("path"), str)
            and isinstance(e.get("digest"), str)
            and isinstance(e.get("size"), int)
            for e in entries
        ):
            raise ValidationError(
                f"artifact {digest} is not a folder (its content is not a tree manifest)."
            )
        return entries


def _check(digest: str, actual: str) -> None:
    if actual != digest:
        raise IntegrityError(
            f"artifact {digest} is corrupt: its content now hashes to {actual}.",
            hint="Restore it from a copy; Lockgate will not load altered artifacts.",
        )


def _files_below(root: Path) -> list[Path]:
    """Every file below ``root``; links to files count as files, links to folders are not
    followed (they could loop), anything else (a broken link, a socket) is an error."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = Path(folder, name)
            if not path.is_file():
                raise ValidationError(
                    f"{path} is not a regular file (a broken link, a link to a folder or a special "
                    "file), so the folder cannot be stored.",
                    hint="Remove it from the folder, or copy in what it points to.",
                )
            found.append(path)
    return found


def _inside(base: Path, relpath: str, digest: str) -> Path:
    """``base / relpath``, refusing anything that would land outside ``base``."""
    parts = PurePosixPath(relpath).parts
    target = base.joinpath(*parts).resolve() if parts else base
    if (
        not parts
        or PurePosixPath(relpath).is_absolute()
        or any(p in ("..", ".") for p in parts)
        or "\\" in relpath
        or not target.is_relative_to(base)
        or target == base
    ):
        raise ValidationError(
            f"artifact {digest} names a file {relpath!r} outside the folder it is written to; "
            "nothing was written.",
            hint="The tree manifest was not written by Lockgate; do not use this artifact.",
        )
    return target


def _fsync_dir(path: str) -> None:
    """Make a folder's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs_durable(path: str) -> None:
    """``mkdir -p`` that also fsyncs the parent of every folder it creates."""
    missing = []
    current = path
    while not os.path.isdir(current):
        missing.append(current)
        current = os.path.dirname(current)
    for folder in reversed(missing):
        os.makedirs(folder, exist_ok=True)
        _fsync_dir(os.path.dirname(folder))
