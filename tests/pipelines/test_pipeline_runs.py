"""Pipelines end to end on a real home: every step kind, caching, retries, timeouts, failures,
retry of an execution, stop, lineage. Steps run in real processes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lockgate.auth.principal import Principal
from lockgate.config.home import Home
from lockgate.errors import ConflictError, NotFoundError, ValidationError
from lockgate.pipelines import service
from lockgate.platform import Platform

PROJECT = Path(__file__).parent / "projects" / "basic"

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(PROJECT, target)
    return target


def _run(platform: Platform, admin: Principal, ref: str, **params: Any) -> dict[str, Any]:
    execution = service.start(platform, admin, ref, {k: str(v) for k, v in params.items()})
    service.drive(platform, admin, execution.id, parallel=2)
    return service.describe(platform, admin, execution.id)


def _steps(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in doc["steps"]}


def test_true_branch_registers_the_model(
    platform: Platform, admin: Principal, project: Path
) -> None:
    result = service.upsert(platform, admin, f"{project}/pipe.py:basic")
    assert result.created and result.version.version == 1
    doc = _run(platform, admin, "basic")
    steps = _steps(doc)
    assert doc["status"] == "succeeded", doc
    assert [
        steps[n]["status"] for n in ("make_data", "fit", "score", "gate", "register_model")
    ] == ["succeeded"] * 5
    assert steps["too_high"]["status"] == "skipped" and "was true" in steps["too_high"]["reason"]
    assert steps["score"]["value"] == {"mse": 3.0, "mean": 4.5}
    assert steps["gate"]["reason"] == "3 <= 5 is true"
    from lockgate.registry import service as registry

    [version] = registry.versions(platform, admin, "basic")
    assert version.version == 1 and version.model_digest == steps["fit"]["output"]["digest"]
    assert version.metrics["mse"] == 3.0 and version.status == "PendingManualApproval"
    assert version.lineage["execution_id"] == doc["id"] and version.lineage["model_step"] == "fit"
    assert version.lineage["code_digest"].startswith("sha256:")
    log = service.log_file(platform, admin, doc["id"], "make_data").read_text()
    assert "made 10 numbers" in log


def test_false_branch_fails_with_the_message(
    platform: Platform, admin: Principal, project: Path
) -> None:
    service.upsert(platform, admin, f"{project}/pipe.py:basic")
    doc = _run(platform, admin, "basic", threshold=1.0)
    steps = _steps(doc)
    assert doc["status"] == "failed" and "mse above threshold" in doc["reason"]
    assert steps["register_model"]["status"] == "skipped"
    assert steps["too_high"]["status"] == "failed"
    from lockgate.registry import service as registry

    assert registry.groups(platform, admin) == []


def test_second_run_is_cached_and_explained(
    platform: Platform, admin: Principal, project: Path
) -> None:
    service.upsert(platform, admin, f"{project}/pipe.py:basic")
    first = _run(platform, admin, "basic")
    again = service.upsert(platform, admin, f"{project}/pipe.py:basic")
    assert not again.created and again.version.version == 1  # unchanged upsert: same version
    second = _run(platform, admin, "basic")
    steps = _steps(second)
    for name in ("make_data", "fit", "score"):
        assert steps[name]["status"] == "cached" and steps[name]["cached_from"] == first["id"]
        assert steps[name]["output"] == _steps(first)[name]["output"]
    hit = service.explain_cache(platform, admin, second["id"], "fit")
    assert hit["result"] == "hit" and first["id"] in hit["reasons"][0]

    third = _run(platform, admin, "basic", factor=2.0)
    steps = _steps(third)
    assert steps["make_data"]["status"] == "cached"
    assert steps["fit"]["status"] == "succeeded"
    miss = service.explain_cache(platform, admin, third["id"], "fit")
    assert miss["result"] == "miss"
    assert miss["reasons"] == ["parameter 'factor' changed: 1.5 → 2.0"]
    score = service.explain_cache(platform, admin, third["id"], "score")
    assert score["reasons"][0].startswith("input 'model' changed")


def test_editing_a_helper_misses_only_its_step(
    platform: Platform, admin: Principal, project: Path
) -> None:
    service.upsert(platform, admin, f"{project}/pipe.py:basic")
    _run(platform, admin, "basic")
    (project / "helpers.py").write_text("def scale(value: float) -> float:\n    return value * 3\n")
    result = service.upsert(platform, admin, f"{project}/pipe.py:basic")
    assert result.created and result.version.version == 2
    assert '"code_digest"' in service.diff(platform, admin, "basic@1", "basic@2")
    doc = _run(platform, admin, "basic")
    steps = _steps(doc)
    assert steps["make_data"]["status"] == "cached" and steps["fit"]["status"] == "cached"
    assert steps["score"]["status"] == "succeeded" and steps["score"]["value"]["mse"] == 4.5
    why = service.explain_cache(platform, admin, doc["id"], "score")["reasons"]
    assert len(why) == 1 and why[0].startswith("code changed")


def test_retries_with_backoff(
    platform: Platform, admin: Principal, project: Path, tmp_path: Path
) -> None:
    service.upsert(platform, admin, f"{project}/pipe.py:retrying")
    doc = _run(platform, admin, "retrying", marker=tmp_path / "marker")
    step = _steps(doc)["flaky"]
    assert doc["status"] == "succeeded" and step["attempt"] == 3 and step["value"] == 3
    log = service.log_file(platform, admin, doc["id"], "flaky").read_text()
    assert log.count("RuntimeError: flaky attempt") == 2 and "attempt 3 of step flaky" in log


def test_timeout_fails_the_step(platform: Platform, admin: Principal, project: Path) -> None:
    service.upsert(platform, admin, f"{project}/pipe.py:timeouts")
    doc = _run(platform, admin, "timeouts")
    step = _steps(doc)["slow"]
    assert doc["status"] == "failed" and step["status"] == "failed"
    assert "timed out" in step["reason"]


def test_a_raising_step_keeps_its_traceback_and_retry_reuses_what_succeeded(
    platform: Platform, admin: Principal, project: Path
) -> None:
    service.upsert(platform, admin, f"{project}/pipe.py:failing")
    doc = _run(platform, admin, "failing")
    steps = _steps(doc)
    assert doc["status"] == "failed"
    assert (
        steps["boom"]["status"] == "failed" and steps["boom"]["reason"] == "ValueError: bad input"
    )
    assert steps["make_data"]["status"] == "succeeded"
    log = service.log_file(platform, admin, doc["id"], "boom").read_text()
    assert "Traceback" in log and "raise ValueError(message)" in log
    made = steps["make_data"]["output"]
    service.retry(platform, admin, doc["id"])
    service.drive(platform, admin, doc["id"])
    again = _steps(service.describe(platform, admin, doc["id"]))
    assert again["make_data"]["output"] == made and again["make_data"]["status"] == "succeeded"
    assert again["boom"]["status"] == "failed" and again["boom"]["attempt"] == 1
    service.upsert(platform, admin, f"{project}/pipe.py:environ")
    succeeded = _run(platform, admin, "environ")
    with pytest.raises(ConflictError, match="only a failed or stopped one"):
        service.retry(platform, admin, succeeded["id"])


def test_env_vars_and_working_directory(
    platform: Platform, admin: Principal, project: Path
) -> None:
    service.upsert(platform, admin, f"{project}/pipe.py:environ")
    doc = _run(platform, admin, "environ")
    value = _steps(doc)["greet"]["value"]
    assert value.startswith("hello with 2 threads from ") and value.endswith(
        f"/executions/{doc['id']}/code"
    )


def test_lineage_walks_both_ways(platform: Platform, admin: Principal, project: Path) -> None:
    service.upsert(platform, admin, f"{project}/pipe.py:basic")
    doc = _run(platform, admin, "basic")
    steps = _steps(doc)
    model = steps["fit"]["output"]["digest"]
    tree = service.lineage(platform, admin, model)
    assert tree["artifact"]["step"] == "fit"
    [parent] = tree["artifact"]["inputs"]
    assert parent["argument"] == "data" and parent["step"] == "make_data"
    assert {c["step"] for c in tree["used_by"]} == {"score", "register_model"}


@pytest.mark.parametrize(
    ("ref", "params", "error", "text"),
    [
        ("nope", {}, NotFoundError, "pipeline nope does not exist"),
        ("basic@9", {}, NotFoundError, "basic@9 does not exist"),
        ("basic", {"n": "ten"}, ValidationError, "parameter 'n' must be int"),
        ("basic", {"colour": "red"}, ValidationError, "has no parameter 'colour'"),
        ("retrying", {}, ValidationError, "parameter 'marker' (str) is required"),
    ],
)
def test_bad_run_input(
    platform: Platform,
    admin: Principal,
    project: Path,
    ref: str,
    params: dict[str, str],
    error: type,
    text: str,
) -> None:
    service.upsert(platform, admin, f"{project}/pipe.py:basic")
    service.upsert(platform, admin, f"{project}/pipe.py:retrying")
    with pytest.raises(error) as info:  # type: ignore[call-overload]
        service.start(platform, admin, ref, params)
    assert text in str(info.value)


def test_describe_is_json_ready(platform: Platform, admin: Principal, project: Path) -> None:
    service.upsert(platform, admin, f"{project}/pipe.py:basic")
    doc = _run(platform, admin, "basic")
    assert json.loads(json.dumps(doc))["pipeline"] == "basic"


def test_batch_transform_predicts_every_row(
    platform: Platform, admin: Principal, project: Path
) -> None:
    service.upsert(platform, admin, f"{project}/pipe.py:batch")
    doc = _run(platform, admin, "batch")
    assert doc["status"] == "succeeded", doc
    out = _steps(doc)["transform"]["output"]
    assert out["type"] == "Dataset"
    target = project / "predictions"
    platform.env("dev").artifacts.get_tree(out["digest"], target)
    lines = (target / "predictions.csv").read_text().splitlines()
    assert lines[0] == "x,y,prediction" and len(lines) == 21
    _x, y, prediction = lines[5].split(",")
    assert abs(float(prediction) - float(y)) < 1e-6


def test_a_dying_step_process_fails_the_step(
    platform: Platform, admin: Principal, project: Path
) -> None:
    service.upsert(platform, admin, f"{project}/pipe.py:dying")
    doc = _run(platform, admin, "dying")
    step = _steps(doc)["die"]
    assert doc["status"] == "failed" and step["status"] == "failed"
    assert "signal 9" in step["reason"]


def test_an_output_that_cannot_be_stored(
    platform: Platform, admin: Principal, project: Path
) -> None:
    service.upsert(platform, admin, f"{project}/pipe.py:badoutput")
    doc = _run(platform, admin, "badoutput")
    step = _steps(doc)["not_a_dataset"]
    assert step["status"] == "failed"
    assert "Dataset" in step["reason"] and "str" in step["reason"]


def test_steps_after_a_failed_step_are_skipped_and_independent_ones_run(
    platform: Platform, admin: Principal, project: Path
) -> None:
    service.upsert(platform, admin, f"{project}/pipe.py:downstream")
    doc = _run(platform, admin, "downstream")
    steps = _steps(doc)
    assert (
        doc["status"] == "failed"
        and doc["reason"] == "step 'broken_data' failed: RuntimeError: no data today"
    )
    assert steps["broken_data"]["status"] == "failed"
    assert (
        steps["fit"]["status"] == "skipped"
        and steps["fit"]["reason"] == "upstream step 'broken_data' failed"
    )
    assert steps["score"]["status"] == "skipped"
    assert steps["make_data"]["status"] == "succeeded"


def test_a_fan_out_runs_each_call_and_the_fan_in_gets_every_output(
    platform: Platform, admin: Principal, project: Path
) -> None:
    service.upsert(platform, admin, f"{project}/pipe.py:fanout")
    doc = _run(platform, admin, "fanout")
    steps = _steps(doc)
    assert doc["status"] == "succeeded", doc
    assert steps["times-ten-mid"]["value"] == {"value": 20.0}
    assert steps["times-ten-mid"]["reason"] == "ten times 2"  # its note
    assert steps["best"]["reason"] is None
    assert steps["best"]["value"] == {"best": "large", "seen": ["large", "mid", "small"]}


def test_two_orchestrators_cannot_run_one_execution(
    platform: Platform, admin: Principal, project: Path, home: Home
) -> None:
    """The lease: a second orchestrator (a second `resume`) is refused while the first holds it."""
    from lockgate.pipelines.executors.local import LocalExecutor
    from lockgate.pipelines.orchestrator import Orchestrator
    from support import run_cli

    service.upsert(platform, admin, f"{project}/pipe.py:basic")
    execution = service.start(platform, admin, "basic", {})
    env = platform.env("dev")
    with LocalExecutor(max_parallel=1) as executor:
        first = Orchestrator(env, execution.id, executor, platform.home.run_dir / "dev")
        first._claim()
        second = Orchestrator(env, execution.id, executor, platform.home.run_dir / "dev")
        second.owner = "another-host:4242:1"  # as another machine would name itself
        with pytest.raises(ConflictError, match="is being run by"):
            second._claim()
        resumed = run_cli(home, "pipeline", "resume", execution.id)
        assert resumed.code == ConflictError.exit_code and "is being run by" in resumed.err


def test_a_changed_data_file_never_hits_a_stale_cache(
    platform: Platform, admin: Principal, project: Path
) -> None:
    """A step may read a project file by path; changing it must miss, not serve stale output."""
    (project / "settings.json").write_text('{"version": 1}')
    service.upsert(platform, admin, f"{project}/pipe.py:basic")
    _run(platform, admin, "basic")
    (project / "settings.json").write_text('{"version": 2}')
    assert service.upsert(platform, admin, f"{project}/pipe.py:basic").created
    doc = _run(platform, admin, "basic")
    assert _steps(doc)["make_data"]["status"] == "succeeded"
    why = service.explain_cache(platform, admin, doc["id"], "make_data")["reasons"]
    assert why == [
        "the project's data files changed (a non-Python file in the project folder was edited, added or removed)"
    ]
