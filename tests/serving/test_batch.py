"""Batch inference for real: worker processes, files in three formats, a kill and a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import FEATURES, LEAD, _until, make_model
from lockgate.auth.principal import Principal
from lockgate.config.home import Home
from lockgate.errors import ConflictError, ValidationError
from lockgate.infra import service as infra
from lockgate.platform import Platform
from lockgate.registry import service as registry
from lockgate.serving import batch_service
from support import run_cli

pytestmark = pytest.mark.slow

TEAM = """
[[bindings]]
principal = "user:lena"
role = "lead-data-scientist"
environments = ["dev", "preprod", "prod"]
"""


@pytest.fixture
def team(platform: Platform, home: Home, admin: Principal) -> Platform:
    home.platform_file.write_text(home.platform_file.read_text() + TEAM)
    platform = Platform.open(home)
    infra.apply(platform, admin, confirm=lambda plan: True)
    return platform


def _approve(platform: Platform, admin: Principal, folder: Path, group: str = "lin") -> str:
    ref = registry.register(platform, admin, folder, group).ref
    registry.set_status(platform, LEAD, ref, registry.APPROVED)
    return ref


def _rows(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=FEATURES)
    frame["id"] = range(n)  # an extra column: kept in the output, not given to the model
    return frame


def _output(folder: Path, fmt: str) -> pd.DataFrame:
    reader = {"csv": pd.read_csv, "parquet": pd.read_parquet}.get(fmt)
    frames = [
        reader(p) if reader else pd.read_json(p, lines=True)
        for p in sorted(folder.glob(f"part-*.{fmt}"))
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_every_row_is_predicted_once_in_each_format(
    team: Platform, admin: Principal, tmp_path: Path, fmt: str
) -> None:
    ref = _approve(team, admin, make_model(tmp_path / "model"))
    rows = _rows(250)
    source = tmp_path / f"in.{fmt}"
    if fmt == "csv":
        rows.to_csv(source, index=False)
    elif fmt == "parquet":
        rows.to_parquet(source, index=False)
    else:
        source.write_text(rows.to_json(orient="records", lines=True))
    out = tmp_path / "out"

    job = batch_service.start(team, admin, ref, str(source), str(out), workers=2, part_rows=60)
    done = batch_service.drive(team, admin, job.id)

    assert (job.parts, job.rows, done.status) == (5, 250, "succeeded")
    result = _output(out, fmt).sort_values("id")
    expected = rows["a"] + 2 * rows["b"] + 3 * rows["c"]
    assert list(result["id"]) == list(range(250))
    assert np.allclose(result["prediction"], expected)
    assert json.loads((out / "_SUCCESS").read_text())["rows"] == 250


def test_a_folder_of_inputs_and_the_cli(team: Platform, admin: Principal, tmp_path: Path) -> None:
    ref = _approve(team, admin, make_model(tmp_path / "model"))
    folder = tmp_path / "in"
    folder.mkdir()
    _rows(30).to_csv(folder / "a.csv", index=False)
    _rows(20).to_csv(folder / "b.csv", index=False)
    ran = run_cli(
        team.home,
        "batch",
        "run",
        "-m",
        ref,
        "-i",
        str(folder),
        "-o",
        str(tmp_path / "out"),
        "--part-rows",
        "25",
    )
    assert ran.code == 0, ran.err
    assert "50 rows in 3 part(s)" in ran.out and "succeeded" in ran.out
    [listed] = json.loads(run_cli(team.home, "batch", "list", "--json").out)
    assert listed["status"] == "succeeded" and listed["rows"] == 50
    shown = json.loads(run_cli(team.home, "batch", "show", listed["id"], "--json").out)
    assert [p["status"] for p in shown["part_list"]] == ["succeeded"] * 3


def test_bad_jobs_are_refused_before_anything_runs(
    team: Platform, admin: Principal, tmp_path: Path
) -> None:
    model = make_model(tmp_path / "model")
    pending = registry.register(team, admin, model, "lin").ref
    source = tmp_path / "in.csv"
    _rows(10).to_csv(source, index=False)
    with pytest.raises(ConflictError, match="only an approved version is served"):
        batch_service.start(team, admin, pending, str(source), str(tmp_path / "o1"))
    registry.set_status(team, LEAD, pending, registry.APPROVED)
    with pytest.raises(ValidationError, match="does not exist"):
        batch_service.start(team, admin, pending, str(tmp_path / "nope.csv"), str(tmp_path / "o2"))
    (tmp_path / "in.txt").write_text("x")
    with pytest.raises(ValidationError, match="must be files of one format"):
        batch_service.start(team, admin, pending, str(tmp_path / "in.txt"), str(tmp_path / "o3"))
    full = tmp_path / "full"
    full.mkdir()
    (full / "old.csv").write_text("keep me")
    with pytest.raises(ConflictError, match="already holds files"):
        batch_service.start(team, admin, pending, str(source), str(full))
    pd.DataFrame({"a": [1.0], "b": [2.0]}).to_csv(tmp_path / "narrow.csv", index=False)
    job = batch_service.start(
        team, admin, pending, str(tmp_path / "narrow.csv"), str(tmp_path / "o4")
    )
    failed = batch_service.drive(team, admin, job.id)
    assert failed.status == "failed" and "has no column c" in failed.error
    assert (full / "old.csv").read_text() == "keep me"


def test_a_killed_job_resumes_without_redoing_finished_parts(
    team: Platform, admin: Principal, tmp_path: Path
) -> None:
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "inference.py").write_text(
        "import time\n"
        "def model_fn(model_dir):\n    return None\n"
        "def predict_fn(data, model):\n    time.sleep(0.4)\n    return [0.0] * len(data)\n"
    )
    ref = _approve(team, admin, slow, group="slow")
    source = tmp_path / "in.csv"
    _rows(40).to_csv(source, index=False)
    out = tmp_path / "out"
    job = batch_service.start(team, admin, ref, str(source), str(out), workers=1, part_rows=4)
    driver = subprocess.Popen(
        [sys.executable, "-m", "lockgate", "batch", "resume", job.id],
        env={**os.environ, "LOCKGATE_HOME": str(team.home.root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def finished_parts() -> list[int]:
        return [
            p.part for p in batch_service.parts_of(team, admin, job.id) if p.status == "succeeded"
        ]

    _until(lambda: len(finished_parts()) >= 2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its workers
    driver.wait()
    before = {p: (out / f"part-{p:05d}.csv").stat().st_mtime_ns for p in finished_parts()}
    assert 2 <= len(before) < 10
    time.sleep(0.05)

    resumed = run_cli(team.home, "batch", "resume", job.id, timeout=120)

    assert resumed.code == 0, resumed.err
    assert batch_service.get(team, admin, job.id).status == "succeeded"
    assert len(_output(out, "csv")) == 40
    for part, mtime in before.items():
        assert (out / f"part-{part:05d}.csv").stat().st_mtime_ns == mtime  # not redone
