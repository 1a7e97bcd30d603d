"""An environment's artifact store: buckets, and blobs addressed by their SHA-256.

Every read of a blob verifies its digest, so a blob changed on disk is refused instead of
silently used. Writes go to a temporary name first and are renamed into place.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from lockgate.backends import artifact_backends, build
from lockgate.errors import IntegrityError, NotFoundError
from lockgate.ids import new_id

BLOBS = "blobs"


@dataclass(frozen=True)
class ArtifactStore:
    url: str

    @cached_property
    def _fs_root(self) -> tuple[Any, str]:
        return build(self.url, artifact_backends(), "artifact store")  # type: ignore[no-any-return]

    @property
    def fs(self) -> Any:
        return self._fs_root[0]

    @property
    def root(self) -> str:
        return self._fs_root[1]

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

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` once, by content; returns its ``sha256:`` digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        target = self._blob_path(digest)
        if not self.fs.exists(target):
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            tmp = f"{target}.{new_id()}.tmp"
            with self.fs.open(tmp, "wb") as handle:
                handle.write(data)
            self.fs.mv(tmp, target)
        return digest

    def get_bytes(self, digest: str) -> bytes:
        """The blob ``digest``, after checking that its content still has that digest."""
        target = self._blob_path(digest)
        if not self.fs.exists(target):
            raise NotFoundError(f"artifact {digest} is not in {self.url}.")
        with self.fs.open(target, "rb") as handle:
            data: bytes = handle.read()
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise IntegrityError(
                f"artifact {digest} is corrupt: its content now hashes to {actual}.",
                hint="Restore it from a copy; Lockgate will not load altered artifacts.",
            )
        return data

    def _blob_path(self, digest: str) -> str:
        algo, _, hexdigest = digest.partition(":")
        if (
            algo != "sha256"
            or len(hexdigest) != 64
            or not all(c in "0123456789abcdef" for c in hexdigest)
        ):
            raise NotFoundError(f"{digest!r} is not a sha256 artifact digest.")
        return self.path(BLOBS, hexdigest[:2], hexdigest)
