"""Each built-in template followed from a push to its end state, on a real home: real git and
its post-receive hook, the CI runs, the pipelines, approvals, and (build-train-deploy) the
daemon serving the model in prod."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockgate.auth import audit as audit_log
from lockgate.auth.principal import Principal
from lockgate.errors import PermissionDeniedError
from lockgate.platform import Platform
from lockgate.projects import ci, demo, githost, service
from lockgate.registry import service as registry
from lockgate.store import projects as db
from lockgate.store import schedules as schedule_db
from support import home_on_free_ports, run_cli

LENA = Principal("user:lena")
ROW = json.dumps([demo.ROW])


def _push_a_change(checkout: Path) -> str:
    (checkout / "NOTES.md").write_text("a change\n")
    githost.git("add", "NOTES.md", cwd=checkout)
    githost.git("commit", "--quiet", "-m", "a change", cwd=checkout)
    githost.git("push", "--quiet", "origin", "main", cwd=checkout)
    return githost.git("rev-parse", "HEAD", cwd=checkout)


def _runs(platform: Platform, admin: Principal, project: str) -> list[tuple[str, db.CiRun]]:
    return ci.list_runs(platform, admin, project)


def _wait(
    platform: Platform,
    admin: Principal,
    project: str,
    kind: str,
    env: str,
    status: tuple[str, ...],
    timeout: float = 240,
) -> db.CiRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run_env, run in _runs(platform, admin, project):
            if (run_env, run.kind) == (env, kind) and run.status in status:
                return run
            if (run_env, run.kind) == (env, kind) and run.status == "failed":
                raise AssertionError(f"{kind} in {env} failed: {run.error}\n{run.log}")
        time.sleep(0.2)
    raise AssertionError(
        f"no {kind} run in {env} reached {status}: {_runs(platform, admin, project)}"
    )


def _drain(platform: Platform) -> list[str]:
    """Run every due CI run in this process (no daemon), as the daemon's worker would."""
    ran = []
    while (run_id := ci.work_once(platform, "test-worker")) is not None:
        ran.append(run_id)
    return ran


def _daemon_home(tmp_path: Path, admin: Principal, envs: list[str]) -> Platform:
    lead = f"""
[[bindings]]
principal = "user:lena"
role = "lead-data-scientist"
environments = {json.dumps(envs)}
"""
    platform: Platform = home_on_free_ports(tmp_path / "home", admin, envs, lead)
    return platform


@pytest.fixture
def daemon_home(tmp_path: Path, admin: Principal) -> Iterator[Platform]:
    platform = _daemon_home(tmp_path, admin, ["dev", "preprod", "prod"])
    started = run_cli(platform.home, "up", "--detach")
    assert started.code == 0, started.err + started.out
    yield platform
    stopped = run_cli(platform.home, "down", timeout=120)
    assert stopped.code == 0, stopped.err


def test_build_train_deploy_from_push_to_a_prod_endpoint(
    daemon_home: Platform, admin: Principal, tmp_path: Path
) -> None:
    platform = daemon_home
    checkout = tmp_path / "shop"
    created = run_cli(
        platform.home,
        "project",
        "create",
        "shop",
        "--template",
        "build-train-deploy",
        "--dir",
        str(checkout),
    )
    assert created.code == 0, created.err
    assert (checkout / ".github" / "workflows" / "build.yml").is_file()

    commit = _push_a_change(checkout)
    build = _wait(platform, admin, "shop", "build", "dev", ("succeeded",))
    assert build.commit == commit and build.run_as == "service:shop-ci-dev"
    (version,) = registry.versions(platform, admin, "shop", env="dev")
    assert version.status == "PendingManualApproval"

    approved = run_cli(
        platform.home, "model", "approve", "shop/1", "--env", "dev", "--comment", "looks good"
    )
    assert approved.code == 0, approved.err
    preprod = _wait(platform, admin, "shop", "deploy", "preprod", ("succeeded",))
    log = run_cli(platform.home, "ci", "logs", preprod.id).out
    assert "8 endpoint test(s) passed" in log and "predictions in" in log
    prod = _wait(platform, admin, "shop", "deploy", "prod", ("waiting",))
    assert prod.approvers == [admin.name]

    with pytest.raises(PermissionDeniedError, match="not a required approver"):
        ci.approve(platform, LENA, prod.id)
    released = run_cli(platform.home, "ci", "approve", prod.id, "--comment", "preprod green")
    assert released.code == 0, released.err
    _wait(platform, admin, "shop", "deploy", "prod", ("succeeded",))

    answer = run_cli(platform.home, "endpoint", "invoke", "shop", "--env", "prod", "--data", ROW)
    assert answer.code == 0, answer.err
    (prediction,) = json.loads(answer.out)
    assert 5 < float(prediction) < 15
    listed = json.loads(run_cli(platform.home, "endpoint", "list", "--env", "prod", "--json").out)
    assert listed[0]["url"].endswith("/endpoints/shop/invocations")

    prod_env = platform.env("prod")
    with prod_env.store.read() as s:
        assert schedule_db.get(s, "shop-batch") is not None
        actions = [(e.action, e.actor, e.outcome) for e in audit_log.list_events(s)]
    assert ("ci.approve", LENA.name, "denied") in actions
    assert ("ci.approve", admin.name, "ok") in actions
    runs = json.loads(run_cli(platform.home, "ci", "runs", "shop", "--json").out)
    assert [(r["kind"], r["environment"], r["status"]) for r in runs] == [
        ("deploy", "prod", "succeeded"),
        ("deploy", "preprod", "succeeded"),
        ("build", "dev", "succeeded"),
    ]


def test_bring_your_own_container_serves_with_the_repositorys_command(
    tmp_path: Path, admin: Principal
) -> None:
    platform = _daemon_home(tmp_path, admin, ["dev", "preprod"])
    assert run_cli(platform.home, "up", "--detach").code == 0
    try:
        checkout = tmp_path / "own"
        service.create(
            platform,
            admin,
            "own",
            "build-train-deploy",
            options={"serving": "realtime", "byoc": "true"},
            checkout=checkout,
        )
        assert (checkout / "pipeline" / "serve" / "serve.py").is_file()
        _push_a_change(checkout)
        _wait(platform, admin, "own", "build", "dev", ("succeeded",))
        registry.set_status(platform, admin, "own/1", registry.APPROVED, env="dev")
        waiting = _wait(platform, admin, "own", "deploy", "preprod", ("waiting",))
        ci.approve(platform, admin, waiting.id)
        done = _wait(platform, admin, "own", "deploy", "preprod", ("succeeded",))
        assert "a command package serves itself" in (ci.log_text(platform, admin, done.id))
        from lockgate.serving import service as endpoints

        found = endpoints.get(platform, admin, "own", env="preprod")
        assert found.serving and found.serving["format"] == "command"
    finally:
        run_cli(platform.home, "down", timeout=120)


def test_promote_pipeline_trains_in_each_environment_on_its_own_data(
    platform: Platform, admin: Principal, tmp_path: Path
) -> None:
    checkout = tmp_path / "scores"
    service.create(platform, admin, "scores", "promote-pipeline", checkout=checkout)
    _push_a_change(checkout)
    _drain(platform)  # the build in dev, then the deploy to preprod it queued
    runs = {(env, r.kind): r for env, r in _runs(platform, admin, "scores")}
    assert runs[("dev", "build")].status == "succeeded", runs[("dev", "build")].log
    assert runs[("preprod", "deploy")].status == "succeeded", runs[("preprod", "deploy")].log
    prod = runs[("prod", "deploy")]
    assert prod.status == "waiting"
    ci.approve(platform, admin, prod.id)
    _drain(platform)
    _, prod = ci.get(platform, admin, prod.id)
    assert prod.status == "succeeded", prod.log

    from lockgate.pipelines import service as pipelines

    sources = {}
    for env in ("dev", "preprod", "prod"):
        (execution,) = pipelines.list_executions(platform, admin, "scores", env=env)
        assert execution.status == "succeeded"
        sources[env] = execution.parameters["source"]
        (version,) = registry.versions(platform, admin, "scores", env=env)
        assert version.status == registry.APPROVED  # registered in that environment
    assert len(set(sources.values())) == 3  # each environment trained on its own data
    for env in ("preprod", "prod"):
        with platform.env(env).store.read() as s:
            schedule = schedule_db.get(s, "scores-train")
        assert schedule is not None and schedule.pipeline.startswith("scores@")


def test_build_train_trains_in_one_environment(
    platform: Platform, admin: Principal, tmp_path: Path
) -> None:
    checkout = tmp_path / "solo"
    created = service.create(platform, admin, "solo", "build-train", checkout=checkout)
    assert list(created.provisioned) == ["dev"]
    _push_a_change(checkout)
    (run_id,) = _drain(platform)
    _, run = ci.get(platform, admin, run_id)
    assert run.status == "succeeded", run.log
    (version,) = registry.versions(platform, admin, "solo", env="dev")
    assert version.status == "PendingManualApproval"
    with platform.env("dev").store.read() as s:
        from lockgate.store import automation

        assert automation.get_rule(s, "solo-deploy") is None  # nothing to deploy to


def test_generated_workflows_are_valid_github_actions(
    platform: Platform, admin: Principal, tmp_path: Path
) -> None:
    import sys

    for template in ("build-train-deploy", "promote-pipeline", "build-train"):
        checkout = tmp_path / template
        service.create(
            platform, admin, f"w-{template}"[:30].rstrip("-"), template, checkout=checkout
        )
        workflows = sorted((checkout / ".github" / "workflows").glob("*.yml"))
        assert workflows
        checked = subprocess.run(
            [
                sys.executable,
                "-m",
                "check_jsonschema",
                "--builtin-schema",
                "vendor.github-workflows",
                *map(str, workflows),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        for workflow in workflows:
            assert "lockgate ci " in workflow.read_text()
