"""Serving fixtures: small real models, free loopback ports, and homes whose ports don't collide."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lockgate.auth.principal import Principal
from lockgate.config.home import Home
from lockgate.infra import service as infra
from lockgate.infra.bootstrap import init
from lockgate.pipelines.types import Model
from lockgate.platform import Platform
from lockgate.registry import service as registry
from support import free_port_block, run_cli

LEAD = Principal("user:lena")
ROW = "[[1, 2, 3]]"  # a + 2b + 3c = 14

FEATURES = ["a", "b", "c"]


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


def _until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


@pytest.fixture
def served(tmp_path: Path, admin: Principal) -> Iterator[Platform]:
    """A home (dev, preprod) on ports of its own, with the daemon running."""
    home = Home(tmp_path / "home")
    init(home, admin, org="acme", environments=["dev", "preprod"])
    base = free_port_block(30)
    text = home.platform_file.read_text()
    text = text.replace("port_range = [20000, 20999]", f"port_range = [{base}, {base + 9}]")
    text = text.replace("port_range = [21000, 21999]", f"port_range = [{base + 10}, {base + 19}]")
    text += f"""
[[bindings]]
principal = "user:lena"
role = "lead-data-scientist"
environments = ["dev", "preprod"]

[daemon]
port = {base + 25}
"""
    home.platform_file.write_text(text)
    platform = Platform.open(home)
    infra.apply(platform, admin, confirm=lambda plan: True)
    started = run_cli(home, "up", "--detach")
    assert started.code == 0, started.err + started.out
    yield platform
    stopped = run_cli(home, "down", timeout=120)
    assert stopped.code == 0, stopped.err


def _approved(platform: Platform, admin: Principal, folder: Path, group: str = "lin") -> str:
    ref = registry.register(platform, admin, folder, group).ref
    registry.set_status(platform, LEAD, ref, registry.APPROVED)
    return ref


def _gateway(platform: Platform, env: str = "dev") -> str:
    info = json.loads((platform.home.run_dir / "daemon.json").read_text())
    return str(info["gateways"][env])
