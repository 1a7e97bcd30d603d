"""Lockgate: a self-hosted, secure MLOps platform.

The public Python API is declared in ``__all__``; everything else may move between releases::

    from lockgate import Dataset, Metrics, Model, Parameter, condition, fail, pipeline, step
"""

from lockgate.pipelines.sdk import (
    Parameter,
    condition,
    fail,
    pipeline,
    register_model,
    step,
    transform,
)
from lockgate.pipelines.types import Dataset, Metrics, Model

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "Metrics",
    "Model",
    "Parameter",
    "__version__",
    "condition",
    "fail",
    "pipeline",
    "register_model",
    "step",
    "transform",
]
