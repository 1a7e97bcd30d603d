"""Code identity: the digest of a step's code, and the snapshot of a project's files.

A step's code digest covers its own source, the source of every function or class of the same
project that it refers to (recursively), and the files of the project modules those come from
and import. So editing a helper the step calls changes the digest (a cache miss), while editing
an unrelated step in the same file does not.

A snapshot is a deterministic zip of the project folder (the folder of the pipeline file),
stored by content: an execution always runs the code it was started with.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import io
import json
import os
import shutil
import sys
import textwrap
import types
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lockgate.errors import ValidationError

SKIP_DIRS = frozenset(
    {
        "__pycache__",
        ".git",
        ".venv",
        "venv",
        "node_modules",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
    }
)
MAX_SNAPSHOT_BYTES = 100 * 1024 * 1024


def _in_project(path: str | None, root: Path) -> bool:
    if not path:
        return False
    resolved = Path(path).resolve()
    return root == resolved or root in resolved.parents


def _module_file(module: types.ModuleType) -> str | None:
    return getattr(module, "__file__", None)


def _imported_project_modules(path: Path, root: Path, seen: set[Path]) -> None:
    """Add ``path`` and every project module it imports (transitively) to ``seen``.

    Absolute and relative imports are followed, at any depth of the file (imports inside
    functions too).
    """
    if path in seen or not path.is_file():
        return
    seen.add(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        for candidate in _import_targets(node, path, root):
            _imported_project_modules(candidate, root, seen)


def _import_targets(node: ast.AST, path: Path, root: Path) -> list[Path]:
    """The project files an ``import`` node of ``path`` may load."""
    bases: list[Path] = []
    if isinstance(node, ast.Import):
        bases = [root.joinpath(*a.name.split(".")) for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:  # relative: from the file's package, up level-1 folders
            anchor = path.parent
            for _ in range(node.level - 1):
                anchor = anchor.parent
        else:
            anchor = root
        module = anchor.joinpath(*node.module.split(".")) if node.module else anchor
        bases = [module] + [module / a.name for a in node.names]
    found = []
    for base in bases:
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file() and _in_project(str(candidate), root):
                found.append(candidate.resolve())
    return found


def _canonical(value: Any) -> str:
    """A stable text for a plain data constant; ``TypeError`` for anything else."""

    def plain(v: Any) -> Any:
        if v is None or isinstance(v, str | int | float | bool):
            return v
        if isinstance(v, bytes):
            return {"bytes": v.hex()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, set | frozenset):
            return {"set": sorted(json.dumps(plain(x), sort_keys=True) for x in v)}
        if isinstance(v, dict):
            return {
                "dict": sorted(
                    (json.dumps(plain(k), sort_keys=True), plain(x)) for k, x in v.items()
                )
            }
        raise TypeError(type(v).__name__)

    return json.dumps(plain(value), sort_keys=True)


def code_digest(fn: Callable[..., Any], root: Path) -> str:
    """The digest of ``fn``'s code and the project code it depends on."""
    root = root.resolve()
    sources: dict[str, str] = {}
    files: set[Path] = set()
    _collect(fn, root, sources, files)
    digest = hashlib.sha256()
    for key in sorted(sources):
        digest.update(f"{key}\n{sources[key]}\n".encode())
    for path in sorted(files):
        digest.update(f"{path.relative_to(root)}\n".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def _collect(obj: Any, root: Path, sources: dict[str, str], files: set[Path]) -> None:
    """Add what ``obj`` (a function or class of the project) depends on.

    It fails closed: whatever it cannot see through (an object that is not plain data, a
    callable wrapper, code without source) brings in the whole file that defines it.
    """
    obj = inspect.unwrap(obj)
    module_name = getattr(obj, "__module__", None)
    module = sys.modules.get(module_name or "")
    module_file = _module_file(module) if module else None
    key = f"{module_name}:{getattr(obj, '__qualname__', repr(obj))}"
    if key in sources:
        return
    try:
        sources[key] = inspect.getsource(obj)
    except (OSError, TypeError):
        sources[key] = "(no source)"
        if _in_project(module_file, root):
            _imported_project_modules(Path(module_file).resolve(), root, files)  # type: ignore[arg-type]
        return
    if module_file and _in_project(module_file, root):
        # Imports inside the function's own body (and relative ones) load project files too.
        try:
            tree = ast.parse(textwrap.dedent(sources[key]))
        except SyntaxError:
            tree = None
        for node in ast.walk(tree) if tree else ():
            for target in _import_targets(node, Path(module_file).resolve(), root):
                _imported_project_modules(target, root, files)
    code = getattr(obj, "__code__", None)
    globals_ = getattr(obj, "__globals__", {})
    if code is None:  # a class: follow its methods
        for value in vars(obj).values():
            if inspect.isfunction(value):
                _collect(value, root, sources, files)
        return
    for name in sorted(_names(code)):
        if name not in globals_:
            continue  # a builtin, an attribute name, or a local import (handled above)
        value = globals_[name]
        if getattr(value, "__lockgate_step__", False):
            value = value.fn
        if isinstance(value, types.ModuleType):
            origin = _module_file(value)
            if _in_project(origin, root):
                _imported_project_modules(Path(origin).resolve(), root, files)  # type: ignore[arg-type]
            continue
        if inspect.isfunction(inspect.unwrap(value)) or inspect.isclass(value):
            value = inspect.unwrap(value)
            defining = sys.modules.get(value.__module__)
            origin = _module_file(defining) if defining else None
            if not _in_project(origin, root):
                continue  # a library's function: versioned by the environment, not the project
            if value.__module__ == module_name and not _is_wrapper(globals_[name]):
                _collect(value, root, sources, files)
            else:
                _imported_project_modules(Path(origin).resolve(), root, files)  # type: ignore[arg-type]
            continue
        try:
            sources[f"{module_name}:{name}"] = _canonical(value)  # a data constant
        except TypeError:
            # An object we cannot describe: its defining file (and the step's) decide.
            defining = sys.modules.get(getattr(type(value), "__module__", ""))
            for origin in (_module_file(defining) if defining else None, module_file):
                if _in_project(origin, root):
                    _imported_project_modules(Path(origin).resolve(), root, files)  # type: ignore[arg-type]


def _is_wrapper(value: Any) -> bool:
    """A callable that is not the plain function (``lru_cache``, a decorator's wrapper…)."""
    return not inspect.isfunction(value) or inspect.unwrap(value) is not value


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def snapshot(root: Path) -> bytes:
    """A deterministic zip of the project folder (same files → same bytes → same digest)."""
    root = root.resolve()
    buffer = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(_project_files(root)):
            data = path.read_bytes()
            total += len(data)
            if total > MAX_SNAPSHOT_BYTES:
                raise ValidationError(
                    f"the project folder {root} holds more than {MAX_SNAPSHOT_BYTES // 2**20} MiB of files.",
                    hint="Keep large data in a bucket and pass its address as a parameter.",
                )
            info = zipfile.ZipInfo(str(path.relative_to(root)), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def data_digest(root: Path) -> str:
    """The digest of the project's files other than Python modules (its data and configs).

    Steps may read them by path at run time, which no code analysis can see, so every step's
    cache key includes this digest: changing a data file misses every step, never hits stale.
    """
    root = root.resolve()
    digest = hashlib.sha256()
    for path in sorted(_project_files(root)):
        if path.suffix != ".py":
            digest.update(f"{path.relative_to(root)}\n".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def _project_files(root: Path) -> list[Path]:
    out = []
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts
        if any(p in SKIP_DIRS or p.startswith(".") for p in parts):
            continue
        if path.is_file() and not path.name.endswith((".pyc", ".pyo")):
            out.append(path)
    return out


def extract(data: bytes, dest: Path) -> Path:
    """Unpack a snapshot into ``dest`` (once; a complete folder is reused)."""
    marker = dest / ".complete"
    if marker.exists():
        return dest
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for member in archive.namelist():
            target = (tmp / member).resolve()
            if tmp.resolve() not in target.parents:
                raise ValidationError(f"snapshot member {member!r} escapes its folder.")
        archive.extractall(tmp)
    (tmp / ".complete").write_text("")
    try:
        tmp.rename(dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not marker.exists():  # another process did not win the race: a real error
            raise
    return dest
