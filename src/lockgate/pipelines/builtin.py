"""Built-in step code that runs in a step process like user code (batch transform)."""

from __future__ import annotations

from typing import Any

from lockgate.pipelines.types import Dataset, Model


def batch_transform(
    model: Model, data: Dataset, input_file: str = "data.csv", drop: list[str] | None = None
) -> Dataset:
    """Predict every row of ``data``'s ``input_file`` with the model's ``model.joblib``."""
    frame = data.read_csv(input_file)
    features = frame.drop(columns=[c for c in (drop or []) if c in frame.columns])
    estimator: Any = model.load()
    out: Dataset = Dataset.new()
    result = frame.copy()
    result["prediction"] = estimator.predict(features)
    out.write_csv(result, "predictions.csv")
    return out
