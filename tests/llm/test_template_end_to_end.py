"""The llm-build-train-eval template end to end on a real home and daemon: a push builds the
project in CI, which trains and evaluates each candidate (tiny ones here, one of them broken),
registers the best with its scores, and checks it serves; once approved, the model serves from
an endpoint and answers a generation request."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lockgate.auth.principal import Principal
from lockgate.platform import Platform
from lockgate.projects import ci, githost
from lockgate.registry import service as registry
from support import home_on_free_ports, run_cli

pytest.importorskip("transformers", reason="needs lockgate[llm]")
pytestmark = pytest.mark.slow

TINY = {
    "candidates": [
        {
            "name": "nano",
            "architecture": {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64},
            "tokenizer": {"vocab_size": 400},
            "training": {"epochs": 1, "batch_size": 16, "learning_rate": 0.005},
        },
        {
            "name": "micro",
            "architecture": {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 64},
            "tokenizer": {"vocab_size": 500},
            "training": {"epochs": 2, "batch_size": 16, "learning_rate": 0.005},
        },
        # A local pretrained model (its folder is filled in by the test), fine-tuned.
        {
            "name": "tuned",
            "pretrained": "",
            "training": {"epochs": 1, "batch_size": 16, "learning_rate": 0.001},
        },
        {"name": "missing", "pretrained": "/nowhere/model"},
    ]
}


@pytest.fixture
def daemon_home(tmp_path: Path, admin: Principal) -> Iterator[Platform]:
    platform: Platform = home_on_free_ports(tmp_path / "home", admin, ["dev"])
    started = run_cli(platform.home, "up", "--detach")
    assert started.code == 0, started.err + started.out
    yield platform
    stopped = run_cli(platform.home, "down", timeout=120)
    assert stopped.code == 0, stopped.err


def _build(platform: Platform, admin: Principal, project: str, timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _, run in ci.list_runs(platform, admin, project):
            if run.kind == "build" and run.status in ("succeeded", "failed"):
                assert run.status == "succeeded", f"{run.error}\n{run.log}"
                return run.id
        time.sleep(0.5)
    raise AssertionError(f"no build of {project} ended: {ci.list_runs(platform, admin, project)}")


def test_a_pushed_llm_project_registers_its_best_candidate_which_then_serves(
    daemon_home: Platform, admin: Principal, tmp_path: Path, lm_dir: Path
) -> None:
    platform = daemon_home
    checkout = tmp_path / "trivia"
    created = run_cli(
        platform.home,
        "project",
        "create",
        "trivia",
        "--template",
        "llm-build-train-eval",
        "--dir",
        str(checkout),
    )
    assert created.code == 0, created.err

    # Tiny candidates and less data, so that the test takes a minute, not the defaults' few.
    tuned = shutil.copytree(lm_dir, tmp_path / "models" / "tuned")
    candidates = [
        {**c, "pretrained": str(tuned)} if c["name"] == "tuned" else c for c in TINY["candidates"]
    ]
    (checkout / "pipeline" / "candidates.yaml").write_text(
        yaml.safe_dump({"candidates": candidates})
    )
    config = yaml.safe_load((checkout / "lockgate.yaml").read_text())
    config["pipeline"]["parameters"].update({"max_train": "300", "max_new_tokens": "4"})
    (checkout / "lockgate.yaml").write_text(yaml.safe_dump(config))
    githost.git("add", "-A", cwd=checkout)
    githost.git("commit", "--quiet", "-m", "tiny candidates", cwd=checkout)
    githost.git("push", "--quiet", "origin", "main", cwd=checkout)

    run_id = _build(platform, admin, "trivia")
    log = ci.get(platform, admin, run_id)[1].log
    for step in ("prepare", "train-nano", "evaluate-tuned", "select", "check_endpoint"):
        assert re.search(rf"^\[ *[0-9.]+s\]   {step} +succeeded", log, re.M), log
    assert re.search(r"train-missing +succeeded — candidate failed: ValidationError: ", log), log
    assert re.search(r"evaluate-nano +succeeded — accuracy 0\.\d+ \(\d+/50\), perplexity ", log)
    assert re.search(r"select +succeeded — \w+ by accuracy; failed: missing", log), log
    execution = re.search(r"execution (\w+) succeeded", log)
    assert execution is not None, log
    shown = run_cli(platform.home, "pipeline", "logs", execution[1], "select", "--env", "dev")
    assert shown.code == 0, shown.err
    assert "failed: missing: training: ValidationError: candidate 'missing'" in shown.out
    assert "/nowhere/model does not exist" in shown.out

    (version,) = registry.versions(platform, admin, "trivia", env="dev")
    assert version.status == "PendingManualApproval"
    metrics = version.metrics
    assert metrics["candidate"] in ("nano", "micro", "tuned")
    assert metrics["evaluated"] == 50 and 0 <= metrics["accuracy"] <= 1
    assert metrics["perplexity"] > 1
    assert (metrics["candidates_finished"], metrics["candidates_failed"]) == (3, 1)

    package = platform.env("dev").artifacts.get_tree(version.model_digest, tmp_path / "package")
    selection = json.loads((package / "selection.json").read_text())
    assert selection["selected"] == metrics["candidate"] and selection["select_by"] == "accuracy"
    assert sorted(selection["ranking"]) == ["micro", "nano", "tuned"]
    assert list(selection["failed"]) == ["missing"]
    assert len(selection["samples"]) == 5
    assert all(
        set(s) == {"prompt", "generated", "accepted", "correct"} for s in selection["samples"]
    )
    assert selection["candidates"]["tuned"]["training"]["trained"] is True
    candidate = json.loads((package / "candidate.json").read_text())
    assert candidate["name"] == metrics["candidate"]
    assert json.loads((package / "lockgate-model.json").read_text())["format"] == "text-generation"
    assert (package / "tokenizer.json").is_file() or (package / "vocab.json").is_file()

    approved = run_cli(platform.home, "model", "approve", "trivia/1", "--env", "dev")
    assert approved.code == 0, approved.err
    served = run_cli(
        platform.home,
        "endpoint",
        "create",
        "trivia",
        "--model",
        "trivia/1",
        "--env",
        "dev",
        timeout=180,
    )
    assert served.code == 0, served.err + served.out
    request = {
        "inputs": "Question: Who wrote Hamlet?\nAnswer:",
        "parameters": {"max_new_tokens": 4},
    }
    answer = run_cli(
        platform.home, "endpoint", "invoke", "trivia", "--env", "dev", "--data", json.dumps(request)
    )
    assert answer.code == 0, answer.err
    (generation,) = json.loads(answer.out)
    assert isinstance(generation["generated_text"], str)
    request["parameters"] = {"max_new_tokens": 10_000}
    refused = run_cli(
        platform.home, "endpoint", "invoke", "trivia", "--env", "dev", "--data", json.dumps(request)
    )
    assert refused.code != 0 and "max_new_tokens must be a whole number from 1 to" in refused.err


def _rendered(tmp_path: Path, candidates: list[dict[str, object]]) -> Path:
    import copier

    import lockgate

    project = tmp_path / "trivia"
    copier.run_copy(
        str(Path(lockgate.__file__).parent / "templates" / "llm-build-train-eval"),
        project,
        data={"project_name": "trivia", "environments": ["dev"]},
        defaults=True,
        unsafe=False,
        vcs_ref=None,
        quiet=True,
    )
    (project / "pipeline" / "candidates.yaml").write_text(
        yaml.safe_dump({"candidates": candidates})
    )
    return project


def test_bad_data_or_prompt_fails_prepare_naming_it_and_nothing_trains(
    platform: Platform, admin: Principal, tmp_path: Path
) -> None:
    from lockgate.pipelines import service

    project = _rendered(tmp_path, TINY["candidates"][:1])
    with (project / "pipeline" / "data" / "validation.jsonl").open("a") as data:
        data.write('{"question": "Where is the answer?"}\n')
    service.upsert(platform, admin, str(project / "pipeline" / "pipeline.py"))
    cases = [
        ({"prompt_template": "Q: {q}"}, "the prompt template 'Q: {q}' has no {question} slot"),
        ({"select_by": "f1"}, "select_by 'f1' is not a metric the evaluation measures"),
        ({"max_new_tokens": "0"}, "max_new_tokens must be at least 1, not 0"),
        ({}, "validation.jsonl line 501 needs"),
    ]
    for parameters, message in cases:
        execution = service.start(platform, admin, "trivia", parameters)
        done = service.drive(platform, admin, execution.id, parallel=2)
        steps = {s["name"]: s for s in service.describe(platform, admin, execution.id)["steps"]}
        assert done.status == "failed" and message in (done.reason or ""), done.reason
        assert steps["train-nano"]["status"] == "skipped"
        assert steps["register_model"]["status"] == "skipped"


def test_a_pipeline_whose_candidates_all_fail_says_why_each_failed(
    platform: Platform, admin: Principal, tmp_path: Path
) -> None:
    from lockgate.pipelines import service

    project = _rendered(
        tmp_path,
        [
            {"name": "gone", "pretrained": "/nowhere/a"},
            {"name": "empty", "pretrained": str(tmp_path)},
        ],
    )
    service.upsert(platform, admin, str(project / "pipeline" / "pipeline.py"))
    execution = service.start(platform, admin, "trivia", {"max_train": "20"})
    done = service.drive(platform, admin, execution.id, parallel=2)
    assert done.status == "failed"
    reason = done.reason or ""
    assert reason.startswith("step 'select' failed: ValidationError: no candidate finished: ")
    assert "empty: training: ValidationError: candidate 'empty'" in reason
    assert "has no config.json" in reason
    assert "gone: training: ValidationError: candidate 'gone'" in reason
