"""A model package: a folder with the model's files and a manifest, ``lockgate-model.json``.

The manifest says how to serve it::

    {"format": "sklearn", "file": "model.joblib", "features": ["length", …]}
    {"format": "python"}                         # inference.py: model_fn, input_fn, predict_fn, output_fn
    {"format": "command", "command": ["python", "serve.py"], "startup_timeout_s": 60}
    {"format": "text-generation", "limits": {"max_input_tokens": 512, "max_new_tokens": 256}}

A folder without a manifest is read by convention: ``inference.py`` → python; one ``*.joblib``
or ``*.pkl`` file → sklearn. ``Model.save`` in a pipeline step writes the manifest for you.
A command runs with the folder of Lockgate's own Python first on ``PATH``, so ``python`` there
has the libraries the platform has.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from lockgate.errors import ValidationError

MANIFEST = "lockgate-model.json"
FORMATS = ("sklearn", "python", "command", "text-generation")
#: Seconds an instance may take from start to its first good /ping.
STARTUP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Manifest:
    format: str
    file: str | None = None
    #: Input feature names, in order (from the estimator's ``feature_names_in_`` when it has them).
    features: list[str] | None = None
    n_features: int | None = None
    #: For ``command``: the serving command, run in the model folder (no shell).
    command: list[str] | None = None
    startup_timeout_s: float = STARTUP_TIMEOUT_S
    framework: dict[str, str] = field(default_factory=dict)
    #: For ``text-generation``: request limits, e.g. {"max_input_tokens": 512, "max_new_tokens": 256}.
    limits: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {}, [])}


def read_manifest(model_dir: Path) -> Manifest:
    """The manifest of the package in ``model_dir`` (or the one its files imply)."""
    paths = [p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()]

    def read(path: str) -> bytes:
        return (model_dir / path).read_bytes()

    return manifest_of(paths, read, str(model_dir))


def manifest_of(paths: list[str], read: Callable[[str], bytes], where: str) -> Manifest:
    """The manifest of a package holding ``paths`` (``read`` gives a file's bytes), or the one
    its files imply; a :class:`ValidationError` naming ``where`` when it is not a package."""
    if MANIFEST in paths:
        try:
            manifest = Manifest(**json.loads(read(MANIFEST)))
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
            raise ValidationError(
                f"the model manifest of {where} is not valid: {exc}",
                hint=f"Fields: format ({', '.join(FORMATS)}), file, features, command, startup_timeout_s.",
            ) from exc
        _check(manifest, paths, where)
        return manifest
    if "inference.py" in paths:
        return Manifest("python")
    files = sorted(p for p in paths if "/" not in p and p.endswith((".joblib", ".pkl")))
    if len(files) == 1:
        return Manifest("sklearn", file=files[0])
    raise ValidationError(
        f"{where} is not a model package: it has no {MANIFEST}, no inference.py and "
        f"{'several' if files else 'no'} .joblib/.pkl files.",
        hint=f"Save the model with Model.save(estimator) in a step, or write {MANIFEST}.",
    )


def _check(manifest: Manifest, paths: list[str], where: str) -> None:
    if manifest.format not in FORMATS:
        raise ValidationError(
            f"unknown model format {manifest.format!r} in the manifest of {where}.",
            hint=f"One of: {', '.join(FORMATS)}.",
        )
    if manifest.format == "command" and not manifest.command:
        raise ValidationError(f"a 'command' model needs a command (the manifest of {where}).")
    if manifest.format == "text-generation" and "config.json" not in paths:
        raise ValidationError(
            f"a 'text-generation' model needs a Hugging Face causal LM saved with save_pretrained "
            f"(config.json, weights, tokenizer) in {where}."
        )
    if manifest.format == "sklearn" and manifest.file not in paths:
        raise ValidationError(f"the model file {manifest.file!r} is missing from {where}.")
    if not 0 < manifest.startup_timeout_s <= 3600:
        raise ValidationError("startup_timeout_s must be between 0 and 3600 seconds.")


def sklearn_manifest(estimator: Any, file: str) -> Manifest:
    """The manifest for an estimator saved with joblib as ``file``."""
    names = getattr(estimator, "feature_names_in_", None)
    n_features = getattr(estimator, "n_features_in_", None)
    framework = {"module": type(estimator).__module__.split(".")[0]}
    try:
        framework["scikit-learn"] = metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        framework["scikit-learn"] = "not installed"
    return Manifest(
        "sklearn",
        file=file,
        features=[str(n) for n in names] if names is not None else None,
        n_features=int(n_features) if n_features is not None else None,
        framework=framework,
    )


def write_manifest(model_dir: Path, manifest: Manifest) -> Path:
    path = model_dir / MANIFEST
    path.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
    return path
