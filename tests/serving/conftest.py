"""Serving fixtures: small real models, free loopback ports, and homes whose ports don't collide."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

import pytest

from lockgate.pipelines.types import Model

FEATURES = ["a", "b", "c"]


def free_port_block(size: int) -> int:
    """The first port of ``size`` consecutive ports that are free now (per test worker a region)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    region = int(worker.removeprefix("gw") or 0) % 4
    for _ in range(200):
        base = random.randrange(30000 + region * 7000, 36000 + region * 7000, 10)
        if all(_free(p) for p in range(base, base + size)):
            return base
    raise RuntimeError("no free block of ports")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def make_model(folder: Path, factor: float = 1.0) -> Path:
    """y = factor · (a + 2b + 3c), fitted with feature names, saved as a package by Model.save."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 3)), columns=FEATURES)
    target = factor * (frame["a"] + 2 * frame["b"] + 3 * frame["c"])
    folder.mkdir(parents=True, exist_ok=True)
    Model(folder).save(LinearRegression().fit(frame, target))
    return folder


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model")
