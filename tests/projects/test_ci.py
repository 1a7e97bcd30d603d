"""CI runs: leases and retries, approvals, runs by hand in a checkout, the hook's filters, and
failures recorded with their reason."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from lockgate.auth.principal import Principal
from lockgate.errors import ConflictError, ValidationError
from lockgate.platform import Platform
from lockgate.projects import ci, githost, service, templates
from lockgate.store import projects as db
from support import run_cli


def _commit(checkout: Path, name: str, text: str, *, push: str | None = "main") -> None:
    (checkout / name).parent.mkdir(parents=True, exist_ok=True)
    (checkout / name).write_text(text)
    githost.git("add", name, cwd=checkout)
    githost.git("commit", "--quiet", "-m", f"edit {name}", cwd=checkout)
    if push:
        githost.git("push", "--quiet", "origin", f"HEAD:{push}", cwd=checkout)


@pytest.fixture
def tiny(platform: Platform, admin: Principal, template_v1: Path, tmp_path: Path) -> Path:
    templates.add(platform, admin, str(template_v1), name="tiny")
    checkout = tmp_path / "work"
    service.create(platform, admin, "tiny-app", "tiny", checkout=checkout)
    return checkout


def test_only_a_push_to_main_queues_a_build(
    platform: Platform, admin: Principal, tiny: Path
) -> None:
    githost.git("checkout", "--quiet", "-b", "feature", cwd=tiny)
    _commit(tiny, "a.txt", "x", push="feature")
    assert ci.list_runs(platform, admin, "tiny-app") == []
    githost.git("push", "--quiet", "origin", "--delete", "feature", cwd=tiny)
    assert ci.list_runs(platform, admin, "tiny-app") == []


def test_a_dead_workers_run_is_taken_over_and_given_up_after_three_tries(
    platform: Platform, admin: Principal, tiny: Path
) -> None:
    _commit(tiny, "a.txt", "x")
    ((_, queued),) = ci.list_runs(platform, admin, "tiny-app")
    dev = platform.env("dev")
    with dev.store.transaction() as s:  # a worker claims it, then dies
        claimed = db.claim_run(s, "worker-a", lease_s=60)
    assert claimed is not None and claimed.id == queued.id
    assert ci.work_once(platform, "worker-b") is None  # its lease still holds
    with dev.store.transaction() as s:
        db.change_run(s, queued.id, lease_expires_at=time.time() - 1)
    assert ci.work_once(platform, "worker-b") == queued.id
    _, done = ci.get(platform, admin, queued.id)
    assert (done.status, done.attempts) == ("succeeded", 2)
    # The first worker, back from the dead, cannot overwrite the outcome.
    with dev.store.transaction() as s:
        assert not db.finish_run(s, queued.id, "worker-a", status="failed")

    _commit(tiny, "b.txt", "y")
    run = next(r for _, r in ci.list_runs(platform, admin, "tiny-app") if r.status == "queued")
    for worker in ("w1", "w2", "w3"):
        with dev.store.transaction() as s:
            assert db.claim_run(s, worker, lease_s=-1) is not None  # dies at once
    assert ci.work_once(platform, "w4") == run.id
    _, gave_up = ci.get(platform, admin, run.id)
    assert gave_up.status == "failed" and "gave up after 3 attempts" in (gave_up.error or "")


def test_ci_build_by_hand_runs_the_working_tree(
    platform: Platform, admin: Principal, tiny: Path
) -> None:
    (tiny / "lockgate.yaml").write_text((tiny / "lockgate.yaml").read_text().replace("'4'", "'5'"))
    done = run_cli(platform.home, "ci", "build", "--dir", str(tiny))
    assert done.code == 0, done.err + done.out
    assert "pipeline run tiny-app@1 in dev {'scale': '5'}" in done.out
    ((env, run),) = ci.list_runs(platform, admin, "tiny-app")
    assert (env, run.trigger, run.run_as, run.status) == ("dev", "by hand", admin.name, "succeeded")

    wrong = run_cli(platform.home, "ci", "deploy", "--env", "dev", "--dir", str(tiny))
    assert wrong.code != 0 and "ci build" in wrong.err


def test_a_failing_unit_test_fails_the_build(
    platform: Platform, admin: Principal, tmp_path: Path
) -> None:
    checkout = tmp_path / "solo"
    service.create(platform, admin, "solo", "build-train", checkout=checkout)
    _commit(checkout, "tests/unit/test_broken.py", "def test_broken():\n    assert 1 == 2\n")
    run_id = ci.work_once(platform, "w")
    assert run_id is not None
    _, run = ci.get(platform, admin, run_id)
    assert run.status == "failed" and "unit tests failed" in (run.error or "")
    assert "1 failed" in (run.log or "")


def test_approvals_are_for_waiting_runs_and_their_approvers(
    platform: Platform, admin: Principal, tmp_path: Path
) -> None:
    from lockgate.store import iam

    with platform.env("preprod").store.transaction() as s:
        iam.add_binding(s, "user:lena", "lead-data-scientist")
    service.create(
        platform,
        admin,
        "gated",
        "build-train-deploy",
        approvers={"preprod": ["user:lena"], "prod": []},
    )
    waiting = ci.enqueue(platform, "gated", "deploy", "preprod", trigger="test")
    assert waiting.status == "waiting" and waiting.approvers == ["user:lena"]
    with pytest.raises(Exception, match="not a required approver"):
        ci.approve(platform, admin, waiting.id)
    approved = ci.approve(platform, Principal("user:lena"), waiting.id, comment="ok")
    assert (approved.status, approved.approved_by) == ("queued", "user:lena")
    with pytest.raises(ConflictError, match="only a waiting run"):
        ci.approve(platform, Principal("user:lena"), waiting.id)
    free = ci.enqueue(platform, "gated", "deploy", "prod", trigger="test")
    assert free.status == "queued"  # prod= (no approvers) was asked for
    again = ci.enqueue(platform, "gated", "deploy", "prod", trigger="rule", key="delivery:1")
    assert (
        ci.enqueue(platform, "gated", "deploy", "prod", trigger="rule", key="delivery:1").id
        == again.id
    )
    with pytest.raises(ValidationError, match="approvals start with the next"):
        service.create(
            platform, admin, "gated2", "build-train-deploy", approvers={"dev": ["user:x"]}
        )


def test_an_option_the_template_refuses_creates_nothing(
    platform: Platform, admin: Principal
) -> None:
    with pytest.raises(ValidationError, match="byoc serves real-time only"):
        service.create(platform, admin, "mixed", "build-train-deploy", options={"byoc": "true"})
    assert not githost.project_repo(platform.home, "mixed").exists()
    assert service.list_projects(platform, admin) == []


def test_secrets_reach_unit_tests_and_steps_and_never_the_log(
    platform: Platform, admin: Principal, tiny: Path
) -> None:
    secret = "s3cr3t-value-42"
    digest = hashlib.sha256(
        secret.encode()
    ).hexdigest()  # the code compares digests, not the secret
    service.set_secret(platform, admin, "tiny-app", "TOKEN", secret)
    assert [s["name"] for s in service.list_secrets(platform, admin, "tiny-app")] == ["TOKEN"]
    with pytest.raises(ValidationError, match="not an environment variable name"):
        service.set_secret(platform, admin, "tiny-app", "bad-key", "x")
    (tiny / "lockgate.yaml").write_text(
        (tiny / "lockgate.yaml").read_text() + "unit_tests: tests\n"
    )
    _commit(
        tiny,
        "tests/test_env.py",
        "import hashlib\nimport os\n\n\ndef test_env():\n"
        f"    assert hashlib.sha256(os.environ['TOKEN'].encode()).hexdigest() == {digest!r}\n"
        "    assert os.environ['MODEL_GROUP'] == 'tiny-app'\n"
        f"    print('the token is', os.environ['TOKEN'])\n",
        push=None,
    )
    _commit(
        tiny,
        "pipeline/pipeline.py",
        "import hashlib\nimport os\n\nfrom lockgate import Metrics, pipeline, step\n\n\n@step\n"
        "def measure(scale: int) -> Metrics:\n"
        "    token = os.environ.get('TOKEN', '').encode()\n"
        f"    return Metrics(token_ok=hashlib.sha256(token).hexdigest() == {digest!r}, env=os.environ['ENVIRONMENT'])\n\n\n"
        '@pipeline(name="tiny-app")\ndef tiny(scale: int = 3) -> None:\n    measure(scale)\n',
    )
    run_id = ci.work_once(platform, "w")
    assert run_id is not None
    _, run = ci.get(platform, admin, run_id)
    assert run.status == "succeeded", run.log
    from lockgate.pipelines import service as pipelines

    (execution,) = pipelines.list_executions(platform, admin, "tiny-app", env="dev")
    assert execution.project == "tiny-app"
    (step,) = pipelines.describe(platform, admin, execution.id, env="dev")["steps"]
    assert step["value"] == {"token_ok": True, "env": "dev"}
    assert secret not in (run.log or "")
    # Nowhere in the home — stores, audit log, CI logs, state, repositories — is it in clear.
    leaks = [
        str(path)
        for path in platform.home.root.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ]
    assert leaks == []
    listed = run_cli(platform.home, "project", "secret", "list", "tiny-app", "--json")
    assert listed.code == 0 and secret not in listed.out and "TOKEN" in listed.out


def test_the_ci_log_masks_secret_values(tmp_path: Path) -> None:
    from lockgate.projects.citools import CiLog

    log = CiLog(tmp_path / "run.log", secrets=["hunter2-secret", "abc"])
    log.line("connecting with hunter2-secret to the warehouse (abc is short and left alone)")
    text = log.close()
    assert "hunter2-secret" not in text and "***" in text and "abc is short" in text


def test_creating_a_project_grants_no_more_than_the_creator_holds(
    platform: Platform, admin: Principal
) -> None:
    from lockgate.errors import PermissionDeniedError
    from lockgate.store import iam

    with platform.env("dev").store.transaction() as s:
        iam.add_binding(s, "user:eve", "data-scientist")
    for env in ("preprod", "prod"):
        with platform.env(env).store.transaction() as s:
            iam.add_binding(s, "user:eve", "viewer")
    eve = Principal("user:eve")
    with pytest.raises(PermissionDeniedError, match="may not lift the approval gate of prod"):
        service.create(platform, eve, "evil", "build-train-deploy", approvers={"prod": []})
    with pytest.raises(ValidationError, match="may not approve models in preprod"):
        service.create(
            platform, eve, "evil", "build-train-deploy", approvers={"preprod": ["user:eve"]}
        )
    created = service.create(platform, eve, "fine", "build-train-deploy")
    with platform.env("prod").store.read() as s:
        from lockgate.store import projects as db

        prod = db.get_project(s, "fine")
    assert prod is not None and prod.required_approvers == [admin.name]  # who may approve there
    assert created.project.created_by == "user:eve"


def test_ci_acts_only_on_what_is_named_after_the_project(
    platform: Platform, admin: Principal, tiny: Path
) -> None:
    text = (
        (tiny / "lockgate.yaml").read_text().replace("model_group: tiny-app", "model_group: fraud")
    )
    _commit(tiny, "lockgate.yaml", text)
    run_id = ci.work_once(platform, "w")
    assert run_id is not None
    _, run = ci.get(platform, admin, run_id)
    assert run.status == "failed" and "model_group 'fraud' is not the project's" in (
        run.error or ""
    )
