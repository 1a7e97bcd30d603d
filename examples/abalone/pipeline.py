"""The abalone pipeline: preprocess → train → evaluate → (MSE gate) → register, else fail.

    lockgate pipeline upsert examples/abalone/pipeline.py
    lockgate pipeline run abalone -p mse_threshold=6.0
"""

from __future__ import annotations

from features import one_hot_sex, split

from lockgate import Dataset, Metrics, Model, Parameter, condition, fail, pipeline, register_model, step

TARGET = "rings"


@step
def preprocess(source: str, seed: int) -> Dataset:
    """Read the raw CSV, one-hot encode `sex`, split 70/15/15 into train, validation and test."""
    import pandas as pd

    frame = one_hot_sex(pd.read_csv(source))
    out = Dataset.new()
    for name, part in split(frame, seed).items():
        out.write_csv(part, f"{name}.csv")
    print(f"preprocessed {len(frame)} rows")
    return out


@step(retries=1)
def train(data: Dataset, max_iter: int, seed: int) -> Model:
    """A gradient-boosted regressor on the training split."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    frame = data.read_csv("train.csv")
    estimator = HistGradientBoostingRegressor(max_iter=max_iter, random_state=seed)
    estimator.fit(frame.drop(columns=[TARGET]), frame[TARGET])
    model = Model.new()
    model.save(estimator)
    return model


@step
def evaluate(model: Model, data: Dataset) -> Metrics:
    """Mean squared error (and friends) on the held-out test split."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    frame = data.read_csv("test.csv")
    truth = frame[TARGET]
    predicted = model.load().predict(frame.drop(columns=[TARGET]))
    metrics = Metrics(
        mse=float(mean_squared_error(truth, predicted)),
        mae=float(mean_absolute_error(truth, predicted)),
        r2=float(r2_score(truth, predicted)),
        rows=len(frame),
    )
    print(f"test MSE {metrics['mse']:.3f}")
    return metrics


@pipeline
def abalone(
    mse_threshold: float = Parameter(6.0, description="Register the model only at or under this test MSE."),
    max_iter: int = Parameter(100, description="Boosting iterations."),
    seed: int = Parameter(42, description="Random seed for the split and the model."),
    source: str = Parameter("data/abalone.csv", description="The raw data (relative to the project)."),
) -> None:
    data = preprocess(source, seed)
    model = train(data, max_iter, seed)
    metrics = evaluate(model, data)
    with condition(metrics["mse"] <= mse_threshold, name="mse_gate") as gate:
        register_model(model, metrics=metrics, group="abalone")
    with gate.otherwise():
        fail("the model's test MSE is above mse_threshold", name="mse_too_high")
