"""The typed artifacts steps exchange: :class:`Dataset`, :class:`Model` and :class:`Metrics`.

Inside a step, a ``Dataset`` or ``Model`` argument is a folder already materialised from the
artifact store, and one the step returns is stored back by content. ``Dataset.new()`` gives a
fresh folder to write into (in the step's output area when running as a step, a temporary folder
otherwise, so the same function can be called directly in a notebook or a unit test).
"""

from __future__ import annotations

import contextvars
import json
import tempfile
from pathlib import Path
from typing import Any

_output_area: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "output_area", default=None
)
_note: contextvars.ContextVar[str | None] = contextvars.ContextVar("note", default=None)
#: The longest note a step keeps.
MAX_NOTE_CHARS = 500


def note(text: str) -> None:
    """Say, in one line, something about this step's result that ``pipeline describe`` and CI
    logs show beside its status, e.g. ``note("candidate failed: …")``; the last note wins.
    Outside a step (a notebook, a unit test) the note is only printed."""
    line = " ".join(str(text).split())
    if len(line) > MAX_NOTE_CHARS:
        line = line[: MAX_NOTE_CHARS - 1] + "…"
    print(f"note: {line}")
    _note.set(line)


def take_note() -> str | None:
    """The step's note, cleared (the runtime reads it when the step returns)."""
    line = _note.get()
    _note.set(None)
    return line


def set_output_area(path: Path | None) -> contextvars.Token[Path | None]:
    """Where ``new()`` creates folders (the runtime sets it for the duration of a step)."""
    return _output_area.set(path)


def _new_folder(kind: str) -> Path:
    area = _output_area.get()
    if area is None:
        return Path(tempfile.mkdtemp(prefix=f"lockgate-{kind.lower()}-"))
    area.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{kind.lower()}-", dir=area))


class _Folder:
    """An artifact that is a folder of files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def new(cls) -> Any:
        return cls(_new_folder(cls.__name__))

    def file(self, name: str) -> Path:
        """The path of file ``name`` inside the folder (it need not exist yet)."""
        target = (self.path / name).resolve()
        if self.path.resolve() not in target.parents:
            raise ValueError(f"{name!r} is outside the {type(self).__name__.lower()} folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class Dataset(_Folder):
    """Files or a folder of data, with CSV and Parquet helpers (they need pandas)."""

    def read_csv(self, name: str = "data.csv", **kwargs: Any) -> Any:
        import pandas as pd

        return pd.read_csv(self.file(name), **kwargs)

    def write_csv(self, frame: Any, name: str = "data.csv", **kwargs: Any) -> Path:
        target = self.file(name)
        frame.to_csv(target, index=False, **kwargs)
        return target

    def read_parquet(self, name: str = "data.parquet", **kwargs: Any) -> Any:
        import pandas as pd

        return pd.read_parquet(self.file(name), **kwargs)

    def write_parquet(self, frame: Any, name: str = "data.parquet", **kwargs: Any) -> Path:
        target = self.file(name)
        frame.to_parquet(target, index=False, **kwargs)
        return target


class Model(_Folder):
    """A model: a folder holding the serialised estimator and whatever else it needs."""

    def save(self, estimator: Any, name: str = "model.joblib") -> Path:
        import joblib

        from lockgate.serving.package import sklearn_manifest, write_manifest

        target = self.file(name)
        joblib.dump(estimator, target)
        write_manifest(self.path, sklearn_manifest(estimator, name))
        return target

    def load(self, name: str = "model.joblib") -> Any:
        import joblib

        return joblib.load(self.file(name))


class Metrics(dict[str, Any]):
    """A JSON document of measurements, e.g. ``Metrics(mse=4.2)``; ``metrics["mse"]`` in a
    pipeline refers to one value (for conditions)."""

    def to_json(self) -> str:
        return json.dumps(self, sort_keys=True)


def type_name(annotation: Any) -> str:
    """The output type a return annotation declares: Dataset, Model, Metrics, none or json."""
    if annotation is None or annotation is type(None):
        return "none"
    for cls in (Dataset, Model, Metrics):
        if annotation is cls or annotation == cls.__name__:
            return cls.__name__
    return "json"
