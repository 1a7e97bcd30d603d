"""Lockgate: a self-hosted, secure MLOps platform.

The public Python API is declared in ``__all__``; everything else may move between releases::

    from lockgate import Dataset, Metrics, Model, Parameter, condition, fail, pipeline, step

The names are imported on first use, so that ``import lockgate`` (and the ``lockgate`` command,
and every step process) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Dataset": "lockgate.pipelines.types",
    "Metrics": "lockgate.pipelines.types",
    "Model": "lockgate.pipelines.types",
    "Parameter": "lockgate.pipelines.sdk",
    "condition": "lockgate.pipelines.sdk",
    "fail": "lockgate.pipelines.sdk",
    "note": "lockgate.pipelines.types",
    "pipeline": "lockgate.pipelines.sdk",
    "register_model": "lockgate.pipelines.sdk",
    "step": "lockgate.pipelines.sdk",
    "transform": "lockgate.pipelines.sdk",
}

__all__ = [
    "Dataset",
    "Metrics",
    "Model",
    "Parameter",
    "__version__",
    "condition",
    "fail",
    "note",
    "pipeline",
    "register_model",
    "step",
    "transform",
]

if TYPE_CHECKING:
    from lockgate.pipelines.sdk import (
        Parameter,
        condition,
        fail,
        pipeline,
        register_model,
        step,
        transform,
    )
    from lockgate.pipelines.types import Dataset, Metrics, Model, note


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lockgate' has no attribute {name!r}")
