"""A small project pipeline for the tests: every step kind, fast, no third-party imports."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from helpers import scale

from lockgate import (
    Dataset,
    Metrics,
    Model,
    Parameter,
    condition,
    fail,
    note,
    pipeline,
    register_model,
    step,
    transform,
)


@step
def make_data(n: int) -> Dataset:
    out = Dataset.new()
    out.file("numbers.json").write_text(json.dumps(list(range(n))))
    print(f"made {n} numbers")
    return out


@step
def fit(data: Dataset, factor: float) -> Model:
    numbers = json.loads(data.file("numbers.json").read_text())
    model = Model.new()
    model.file("weights.json").write_text(
        json.dumps({"factor": factor, "mean": sum(numbers) / len(numbers)})
    )
    return model


@step
def score(model: Model) -> Metrics:
    weights = json.loads(model.file("weights.json").read_text())
    return Metrics(mse=scale(weights["factor"]), mean=weights["mean"])


@step(retries=2, backoff_s=0.05)
def flaky(marker: str) -> int:
    """Fails until its marker file counts two attempts."""
    path = Path(marker)
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts < 3:
        raise RuntimeError(f"flaky attempt {attempts}")
    return attempts


@step(timeout_s=0.5, retries=0)
def slow(seconds: float) -> None:
    time.sleep(seconds)


@step
def boom(message: str) -> None:
    raise ValueError(message)


@step(env={"LOCKGATE_TEST_GREETING": "hello"}, cpus=2)
def greet() -> str:
    threads = os.environ["OMP_NUM_THREADS"]
    return os.environ["LOCKGATE_TEST_GREETING"] + f" with {threads} threads from " + os.getcwd()


@pipeline
def basic(n: int = Parameter(10), factor: float = 1.5, threshold: float = 5.0) -> None:
    data = make_data(n)
    model = fit(data, factor)
    metrics = score(model)
    with condition(metrics["mse"] <= threshold, name="gate") as gate:
        register_model(model, metrics=metrics, group="basic")
    with gate.otherwise():
        fail("mse above threshold", name="too_high")


@pipeline(name="retrying")
def retrying(marker: str) -> None:
    flaky(marker)


@pipeline(name="timeouts")
def timeouts(seconds: float = 30.0) -> None:
    slow(seconds)


@pipeline(name="failing")
def failing(message: str = "bad input") -> None:
    data = make_data(3)
    boom(message)
    fit(data, 1.0)


@pipeline(name="environ")
def environ() -> None:
    greet()


@step
def nap(seconds: float, label: str) -> str:
    """Sleeps, and appends its label to a file next to the code, to count how often it ran."""
    print(f"nap {label} starts", flush=True)
    time.sleep(seconds)
    with open(os.environ.get("LOCKGATE_TEST_RUNS_FILE", "/dev/null"), "a") as runs:
        runs.write(label + "\n")
    return label


@pipeline(name="sleepy")
def sleepy(seconds: float = 1.0) -> None:
    first = nap(seconds, "first")
    nap(seconds, first)


@step
def table() -> Dataset:
    """y = 2x + 1 as a CSV, for the batch-transform test."""
    out = Dataset.new()
    rows = "\n".join(f"{x},{2 * x + 1}" for x in range(20))
    out.file("data.csv").write_text("x,y\n" + rows + "\n")
    return out


@step
def linear(data: Dataset) -> Model:
    from sklearn.linear_model import LinearRegression

    frame = data.read_csv()
    model = Model.new()
    model.save(LinearRegression().fit(frame[["x"]], frame["y"]))
    return model


@step
def die() -> None:
    os.kill(os.getpid(), 9)


@step
def not_a_dataset() -> Dataset:
    return "just a string"  # type: ignore[return-value]


@pipeline(name="batch")
def batch() -> None:
    data = table()
    transform(linear(data), data, drop=["y"])


@pipeline(name="dying")
def dying() -> None:
    die()


@pipeline(name="badoutput")
def badoutput() -> None:
    not_a_dataset()


@step
def broken_data() -> Dataset:
    raise RuntimeError("no data today")


@pipeline(name="downstream")
def downstream() -> None:
    model = fit(broken_data(), 1.0)
    score(model)
    make_data(2)


@step
def times_ten(factor: float) -> Metrics:
    note(f"ten times\n{factor:g}")  # said as one line
    return Metrics(value=factor * 10)


@step
def best(by: str, **scores: Metrics) -> dict:  # type: ignore[type-arg]
    """A fan-in: one input per keyword."""
    name = max(scores, key=lambda k: scores[k][by])
    return {"best": name, "seen": sorted(scores)}


@pipeline(name="fanout")
def fanout() -> None:
    factors = {"small": 1.0, "large": 3.0, "mid": 2.0}
    scores = {name: times_ten.named(f"times-ten-{name}")(f) for name, f in factors.items()}
    best("value", **scores)
