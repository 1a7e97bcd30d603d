"""The built-in model formats, loaded in the inference server's process.

* ``sklearn``: a joblib file holding anything with ``predict`` (a scikit-learn estimator or
  pipeline); rows become a DataFrame with the feature names when the model has them.
* ``python``: the inference-script convention of the reference service — ``inference.py`` may
  define ``model_fn(model_dir)``, ``input_fn(body, content_type)``, ``predict_fn(data, model)``
  and ``output_fn(prediction, accept)``; each one left out gets the default (load the package's
  joblib file, decode JSON/CSV rows, ``model.predict``, encode as JSON/CSV). ``input_fn`` gets
  text for JSON, CSV and ``text/*`` bodies, bytes otherwise; ``output_fn`` returns the body
  (bytes or text) or ``(body, content_type)``.

``text-generation`` (:mod:`lockgate.serving.textgen`): a Hugging Face causal LM answering
``{"inputs", "parameters"}`` with ``[{"generated_text"}]``.

A ``command`` package serves itself (bring-your-own-container) and is never loaded here.
Load only folders whose digests were verified: a joblib file is a pickle.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from types import ModuleType
from typing import Any

from lockgate.serving import codec
from lockgate.serving.codec import CodecError
from lockgate.serving.package import Manifest, read_manifest


class ModelError(Exception):
    """The model (or its script) failed on a request that passed the checks: a 500."""


class Predictor(ABC):
    def __init__(self, model_dir: Path, manifest: Manifest) -> None:
        self.model_dir = model_dir
        self.manifest = manifest

    @abstractmethod
    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """The response body and its content type; :class:`CodecError` for a bad request."""

    @abstractmethod
    def predict(self, data: Any) -> Any:
        """Predictions for already-decoded ``data`` (batch inference calls this)."""


def load(model_dir: Path) -> Predictor:
    manifest = read_manifest(model_dir)
    if manifest.format == "sklearn":
        return EstimatorPredictor(model_dir, manifest)
    if manifest.format == "python":
        return ScriptPredictor(model_dir, manifest)
    if manifest.format == "text-generation":
        from lockgate.serving.textgen import TextGenerationPredictor

        return TextGenerationPredictor(model_dir, manifest)
    raise ValueError(f"a {manifest.format!r} package serves itself; it is not loaded in-process")


def _load_estimator(model_dir: Path, manifest: Manifest) -> Any:
    import joblib

    file = manifest.file or next(
        (p.name for p in sorted(model_dir.iterdir()) if p.suffix in (".joblib", ".pkl")), None
    )
    if file is None:
        raise FileNotFoundError(f"no .joblib or .pkl file in {model_dir} for the default model_fn")
    return joblib.load(model_dir / file)


class _Rows:
    """Decoded rows, shaped as the model was trained: a DataFrame when it knows its features,
    unless ``as_array`` (the codec has already put the columns in the model's order)."""

    def __init__(self, manifest: Manifest, *, as_array: bool = False) -> None:
        self.features = manifest.features
        self.n_features = manifest.n_features
        self.as_frame = bool(self.features) and not as_array
        if self.as_frame:
            import pandas as pd

            self._frame = pd.DataFrame
        else:
            import numpy as np

            self._array = np.asarray

    def __call__(self, body: bytes, content_type: str) -> Any:
        rows = codec.decode(body, content_type, self.features, self.n_features)
        if self.as_frame:
            return self._frame(rows, columns=self.features)
        return self._array(rows, dtype=float)


_NAMES_WARNING = "X does not have valid feature names"


def _array_is_enough(model: Any, manifest: Manifest) -> bool:
    """Whether ``model`` predicts the same from an array as from a DataFrame of its features.

    A plain estimator does (it only checks the names, and warns); a pipeline that selects
    columns by name does not (it raises). Building a DataFrame per request costs about a quarter
    of a one-row predict, so serving passes arrays when they are enough.
    """
    import numpy as np
    import pandas as pd

    if not manifest.features:
        return False
    probe = np.linspace(0.1, 1.0, len(manifest.features)).reshape(1, -1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NAMES_WARNING)
        try:
            by_array = model.predict(probe)
        except Exception:  # noqa: BLE001 (any failure means: keep the DataFrame)
            return False
    by_frame = model.predict(pd.DataFrame(probe, columns=manifest.features))
    return bool(np.array_equal(np.asarray(by_array), np.asarray(by_frame)))


class EstimatorPredictor(Predictor):
    def __init__(self, model_dir: Path, manifest: Manifest) -> None:
        super().__init__(model_dir, manifest)
        self.model = _load_estimator(model_dir, manifest)
        if not callable(getattr(self.model, "predict", None)):
            raise TypeError(
                f"{manifest.file} holds a {type(self.model).__name__}, which has no predict()"
            )
        as_array = _array_is_enough(self.model, manifest)
        if as_array:  # the codec checked the names; the estimator's own check would only warn
            warnings.filterwarnings("ignore", message=_NAMES_WARNING)
        self.rows = _Rows(manifest, as_array=as_array)

    def predict(self, data: Any) -> Any:
        return self.model.predict(data)

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        data = self.rows(body, content_type)
        try:
            predictions = self.predict(data)
        except Exception as exc:  # the model's own failure, reported as such
            raise ModelError(f"the model failed: {type(exc).__name__}: {exc}") from exc
        return codec.encode(predictions, accept)


_TEXT = (codec.JSON, codec.CSV)


class ScriptPredictor(Predictor):
    def __init__(self, model_dir: Path, manifest: Manifest) -> None:
        super().__init__(model_dir, manifest)
        self.script = _import_script(model_dir)
        model_fn = getattr(self.script, "model_fn", None)
        self.model = model_fn(str(model_dir)) if model_fn else _load_estimator(model_dir, manifest)
        self.rows = _Rows(manifest)

    def predict(self, data: Any) -> Any:
        predict_fn = getattr(self.script, "predict_fn", None)
        return predict_fn(data, self.model) if predict_fn else self.model.predict(data)

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        input_fn = getattr(self.script, "input_fn", None)
        output_fn = getattr(self.script, "output_fn", None)
        if input_fn is None:
            data = self.rows(body, content_type)
        else:
            text = content_type in _TEXT or content_type.startswith("text/")
            try:
                data = input_fn(body.decode() if text else body, content_type)
            except CodecError:
                raise
            except (ValueError, TypeError, KeyError) as exc:
                raise CodecError(400, f"input_fn refused the request: {exc}") from exc
        try:
            prediction = self.predict(data)
        except Exception as exc:  # the script's own failure, reported as such
            raise ModelError(f"the model failed: {type(exc).__name__}: {exc}") from exc
        if output_fn is None:
            return codec.encode(prediction, accept)
        out = output_fn(prediction, accept)
        body_out, ctype = out if isinstance(out, tuple) else (out, accept)
        return (body_out.encode() if isinstance(body_out, str) else bytes(body_out)), ctype


def _import_script(model_dir: Path) -> ModuleType:
    path = model_dir / "inference.py"
    spec = importlib.util.spec_from_file_location("inference", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(model_dir))  # the script may import its neighbours
    spec.loader.exec_module(module)
    return module
