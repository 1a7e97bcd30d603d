"""Plain step functions for the local executor's tests.

The tests copy this file into a temporary code snapshot and run these functions in step
processes, as the orchestrator would; pytest does not collect it (it is not named test_*).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lockgate.pipelines.types import Dataset, Metrics, Model


def make_dataset(rows: int) -> Dataset:
    data: Dataset = Dataset.new()
    lines = ["x,y"] + [f"{i},{2 * i}" for i in range(rows)]
    data.file("data.csv").write_text("\n".join(lines) + "\n")
    data.file("notes/readme.txt").write_text("nested file")
    data.file("empty.bin").write_bytes(b"")
    return data


def train(data: Dataset, factor: float) -> Model:
    rows = data.file("data.csv").read_text().splitlines()[1:]
    model: Model = Model.new()
    model.file("weights.json").write_text(json.dumps({"rows": len(rows), "factor": factor}))
    return model


def evaluate(model: Model, data: Dataset) -> Metrics:
    weights = json.loads(model.file("weights.json").read_text())
    return Metrics(mse=0.5 * weights["factor"], rows=weights["rows"], files=data.files())


def summarise(metrics: Metrics, note: dict[str, Any]) -> dict[str, Any]:
    return {"mse": metrics["mse"], "note": note, "is_metrics": isinstance(metrics, Metrics)}


def nothing() -> None:
    return None


def ignored_value() -> None:
    return 42  # type: ignore[return-value]  # declared none: the runtime ignores the value


def noisy() -> str:
    print("from python stdout")
    print("from python stderr", file=sys.stderr)
    os.write(1, b"from fd 1 directly\n")
    os.system("echo from a shell")
    subprocess.run([sys.executable, "-c", "print('from a child python')"], check=True)
    libc = ctypes.CDLL(None)
    libc.printf(b"from C printf without a flush\n")  # buffered by libc, flushed at exit
    return "done"


def fails() -> None:
    raise ValueError("bad\nthing " + "x" * 1000)


def wrong_type() -> Model:
    return {"not": "a model"}  # type: ignore[return-value]


def not_json() -> object:
    return object()


def sleeper(seconds: float, pid_file: str) -> str:
    child = subprocess.Popen(["sleep", "300"])
    pids = {"step": os.getpid(), "child": child.pid, "parent": os.getppid()}
    Path(pid_file).write_text(json.dumps(pids))
    time.sleep(seconds)
    return "woke up"


def slow_value(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def kill_myself() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def rendezvous(folder: str, me: str, total: int) -> dict[str, float]:
    """Arrive, then wait for ``total`` steps to have arrived: proves they run at the same time."""
    start = time.time()
    Path(folder, me).touch()
    deadline = time.monotonic() + 30
    while len(os.listdir(folder)) < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(os.listdir(folder))} of {total} steps arrived")
        time.sleep(0.01)
    return {"start": start, "end": time.time()}


def unsyncable() -> Dataset:
    """Returns a folder while the disk refuses to make anything durable."""

    def refuse(fd: Any) -> None:
        raise OSError(5, "fsync refused by the test")

    os.fsync = refuse
    data: Dataset = Dataset.new()
    data.file("data.csv").write_text("x\n1\n")
    return data


_memory: list[int] = []


def remember() -> int:
    _memory.append(1)
    return len(_memory)


def where() -> dict[str, Any]:
    return {
        "cwd": os.getcwd(),
        "sys_path_0": sys.path[0],
        "var": os.environ.get("LOCKGATE_TEST_VAR"),
        "pid": os.getpid(),
    }


def has_module(name: str) -> bool:
    return name in sys.modules


def read_file(path: str) -> str:
    return Path(path).read_text()


class Holder:
    @staticmethod
    def nested() -> str:
        return "nested"


class _StepLike:
    """Stands in for what ``@step`` makes: calling it directly is an error, ``.fn`` is the code."""

    __lockgate_step__ = True

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a step called outside a pipeline")


def _decorated_body(x: int) -> int:
    return x * 2


decorated = _StepLike(_decorated_body)
