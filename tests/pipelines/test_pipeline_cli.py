"""The pipeline commands for real: kill -9 of the orchestrator then resume, detach, stop, logs,
cache explain, lineage, and the demo's example project."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lockgate.auth.principal import Principal
from lockgate.config.home import Home
from lockgate.pipelines import service
from lockgate.platform import Platform
from support import run_cli

PROJECT = Path(__file__).parent / "projects" / "basic"
EXAMPLE = Path(__file__).parents[2] / "examples" / "abalone"

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(PROJECT, target)
    return target


def _wait_for(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _step(platform: Platform, admin: Principal, execution_id: str, name: str) -> dict[str, Any]:
    return next(
        s for s in service.describe(platform, admin, execution_id)["steps"] if s["name"] == name
    )


def test_kill_9_of_the_orchestrator_then_resume(
    platform: Platform, admin: Principal, home: Home, project: Path, tmp_path: Path
) -> None:
    runs_file = tmp_path / "runs.txt"
    assert run_cli(home, "pipeline", "upsert", f"{project}/pipe.py:sleepy").code == 0
    env = {**os.environ, "LOCKGATE_HOME": str(home.root), "LOCKGATE_TEST_RUNS_FILE": str(runs_file)}
    with subprocess.Popen(
        [sys.executable, "-m", "lockgate", "pipeline", "run", "sleepy", "-p", "seconds=1.5"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as orchestrator:
        [execution] = _wait_for(
            lambda: service.list_executions(platform, admin, "sleepy"), "the execution"
        )
        _wait_for(
            lambda: _step(platform, admin, execution.id, "nap")["status"] == "running",
            "the first step to run",
        )
        orchestrator.send_signal(signal.SIGKILL)
        orchestrator.wait(timeout=30)
    assert (
        service.get_execution(platform, admin, execution.id).status == "running"
    )  # nobody says otherwise

    resumed = run_cli(
        home,
        "pipeline",
        "resume",
        execution.id,
        env={"LOCKGATE_TEST_RUNS_FILE": str(runs_file)},
        timeout=120,
    )
    assert resumed.code == 0, resumed.out + resumed.err
    doc = service.describe(platform, admin, execution.id)
    assert doc["status"] == "succeeded"
    # Each step ran to completion exactly once: the first was adopted (or re-run after it had
    # died), never run twice at the same time.
    assert sorted(runs_file.read_text().split()) == ["first", "first"]  # second's label is "first"
    assert all(s["status"] == "succeeded" for s in doc["steps"])


def test_detach_then_logs_follow_and_describe(
    platform: Platform, admin: Principal, home: Home, project: Path
) -> None:
    assert run_cli(home, "pipeline", "upsert", f"{project}/pipe.py:sleepy").code == 0
    started = run_cli(home, "pipeline", "run", "sleepy", "-p", "seconds=0.3", "--detach")
    assert started.code == 0 and "started in the background" in started.out
    [execution] = service.list_executions(platform, admin, "sleepy")
    follow = run_cli(home, "pipeline", "logs", execution.id, "--follow", timeout=120)
    assert follow.code == 0
    assert "[nap] nap first starts" in follow.out and "[nap-2] nap first starts" in follow.out
    described = json.loads(run_cli(home, "pipeline", "describe", execution.id, "--json").out)
    assert described["status"] == "succeeded"


def test_stop_a_running_execution(
    platform: Platform, admin: Principal, home: Home, project: Path
) -> None:
    assert run_cli(home, "pipeline", "upsert", f"{project}/pipe.py:sleepy").code == 0
    assert run_cli(home, "pipeline", "run", "sleepy", "-p", "seconds=20", "--detach").code == 0
    [execution] = service.list_executions(platform, admin, "sleepy")
    _wait_for(
        lambda: _step(platform, admin, execution.id, "nap")["status"] == "running",
        "the step to run",
    )
    assert run_cli(home, "pipeline", "stop", execution.id).code == 0
    final = _wait_for(
        lambda: (
            (e := service.get_execution(platform, admin, execution.id)).status == "stopped" and e
        ),
        "the stop",
    )
    assert final.reason == "stopped by request"
    assert _step(platform, admin, execution.id, "nap")["status"] == "stopped"
    assert _step(platform, admin, execution.id, "nap-2")["status"] == "skipped"


def test_commands_and_errors(platform: Platform, home: Home, project: Path) -> None:
    assert run_cli(home, "pipeline", "upsert", f"{project}/pipe.py:basic").code == 0
    again = run_cli(home, "pipeline", "upsert", f"{project}/pipe.py:basic")
    assert "basic@1 is unchanged; nothing stored" in again.out
    ran = run_cli(home, "pipeline", "run", "basic", "--json")
    assert ran.code == 0, ran.err
    doc = json.loads(ran.out)
    explain = run_cli(home, "pipeline", "cache", "explain", doc["id"], "fit")
    assert "cache miss" in explain.out and "no earlier run" in explain.out
    model = next(s for s in doc["steps"] if s["name"] == "fit")["output"]["digest"]
    tree = run_cli(home, "lineage", model)
    assert tree.code == 0 and "make_data" in tree.out and "used by" in tree.out
    for args in (
        ["pipeline", "list"],
        ["pipeline", "show", "basic@1"],
        ["pipeline", "executions"],
        ["model", "groups"],
        ["model", "list", "basic"],
        ["model", "show", "basic/1"],
        ["events", "list"],
    ):
        result = run_cli(home, *args, "--json")
        assert result.code == 0, (args, result.err)
        json.loads(result.out)
    failing = run_cli(home, "pipeline", "run", "basic", "-p", "threshold=0.5")
    assert failing.code == 1 and "mse above threshold" in failing.out
    for args, text in (
        (["pipeline", "run", "basic", "-p", "n"], "is not key=value"),
        (["pipeline", "run", "missing"], "pipeline missing does not exist"),
        (["pipeline", "upsert", "nowhere.py"], "does not exist"),
        (["pipeline", "describe", "01NOPE"], "does not exist"),
        (["pipeline", "logs", doc["id"], "nostep"], "has no step 'nostep'"),
        (["pipeline", "diff", "basic@1", "basic@x"], "is not NAME or NAME@VERSION"),
    ):
        result = run_cli(home, *args)
        assert result.code != 0 and text in result.err, (args, result.err)
        assert "Traceback" not in result.err


def test_the_abalone_example(
    platform: Platform, admin: Principal, home: Home, tmp_path: Path
) -> None:
    project = tmp_path / "abalone"
    shutil.copytree(EXAMPLE, project)
    assert run_cli(home, "pipeline", "upsert", f"{project}/pipeline.py").code == 0
    result = run_cli(home, "pipeline", "run", "abalone", timeout=300)
    assert result.code == 0, result.out + result.err
    assert "evaluate: mae=" in result.out and "registered model abalone/1" in result.out
    from lockgate.registry import service as registry

    [version] = registry.versions(platform, admin, "abalone")
    assert 2.0 < version.metrics["mse"] < 6.0
    assert version.metrics["rows"] == 627  # 15 % of 4,177
    failing = run_cli(home, "pipeline", "run", "abalone", "-p", "mse_threshold=1.0", timeout=300)
    assert failing.code == 1 and "above mse_threshold" in failing.out


def test_stop_after_the_orchestrator_was_killed_stops_the_step_too(
    platform: Platform, admin: Principal, home: Home, project: Path, tmp_path: Path
) -> None:
    runs_file = tmp_path / "runs.txt"
    assert run_cli(home, "pipeline", "upsert", f"{project}/pipe.py:sleepy").code == 0
    env = {**os.environ, "LOCKGATE_HOME": str(home.root), "LOCKGATE_TEST_RUNS_FILE": str(runs_file)}
    with subprocess.Popen(
        [sys.executable, "-m", "lockgate", "pipeline", "run", "sleepy", "-p", "seconds=3"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as orchestrator:
        [execution] = _wait_for(lambda: service.list_executions(platform, admin, "sleepy"), "it")
        _wait_for(
            lambda: (
                (_step(platform, admin, execution.id, "nap").get("attempt") or 0) >= 1
                and _step(platform, admin, execution.id, "nap")["status"] == "running"
            ),
            "the step to run",
        )
        time.sleep(0.3)  # let the handle be recorded
        orchestrator.send_signal(signal.SIGKILL)
        orchestrator.wait(timeout=30)
    stopped = run_cli(home, "pipeline", "stop", execution.id)
    assert stopped.code == 0 and "is stopped" in stopped.out, stopped.err
    assert _step(platform, admin, execution.id, "nap")["status"] == "stopped"
    time.sleep(3.5)  # past the moment the step would have finished
    assert not runs_file.exists()  # it was killed, not left running
