"""The golden path, end to end, in the current home: ``lockgate demo``.

init → infra apply → daemon up → project create (build-train-deploy) → a push → the build in
the first environment → approve the model → deploy to the next environment (endpoint, endpoint
tests, batch job) → approve the gated deploy → the last environment's endpoint → a prediction.
Each stage reports through ``say``; the daemon is left running for the user to explore.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockgate.auth.principal import Principal
from lockgate.config.home import Home
from lockgate.errors import ConflictError
from lockgate.platform import Platform
from lockgate.store import projects as db

PROJECT = "abalone"
TEMPLATE = "build-train-deploy"
#: A typical abalone (the first row of the data set), one-hot encoded as the model takes it.
ROW = {
    "length": 0.455,
    "diameter": 0.365,
    "height": 0.095,
    "whole weight": 0.514,
    "shucked weight": 0.2245,
    "viscera weight": 0.101,
    "shell weight": 0.15,
    "sex_F": 0,
    "sex_I": 0,
    "sex_M": 1,
}
WAIT_S = 600.0


@dataclass
class DemoResult:
    project: str
    checkout: Path
    runs: list[str] = field(default_factory=list)
    prediction: Any = None
    endpoints: dict[str, str] = field(default_factory=dict)
    api_url: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


def run(
    home: Home,
    principal: Principal,
    say: Callable[[str], None],
    start_daemon: Callable[[Platform], dict[str, Any]],
) -> DemoResult:
    """The golden path; ``start_daemon`` starts the daemon detached and returns its info (the
    caller passes it in, so this service does not reach up into the server layer)."""
    from lockgate.config.daemon_files import running
    from lockgate.infra import service as infra
    from lockgate.infra.bootstrap import init

    clock = _Clock()
    if not home.is_initialised():
        init(home, principal, org="demo")
        say(f"initialised a platform home at {home.root}")
    platform = Platform.open(home)
    pending = infra.plan(platform, principal)
    deletions = [c for c in pending.changes if c.action == "delete"]
    if deletions:
        raise ConflictError(
            f"infra apply would delete {len(deletions)} resource(s) in this home; the demo "
            "does not do that for you.",
            hint="Look at `lockgate infra plan` and apply it yourself, or run the demo in a new "
            "home: LOCKGATE_HOME=/tmp/lockgate-demo lockgate demo",
        )
    infra.apply(platform, principal, confirm=lambda plan: True)
    say(f"applied platform.toml: environments {', '.join(platform.env_names)}")
    if len(platform.env_names) < 2:
        raise ConflictError(
            "the demo deploys through at least two environments; this home has one.",
            hint="Run it in a new home: LOCKGATE_HOME=/tmp/lockgate-demo lockgate demo",
        )
    clock.mark("bootstrap")
    info = running(home)
    if info is None:
        info = start_daemon(platform)
        say(f"daemon started (pid {info['pid']}), API {info['api_url']}")
    else:
        say(f"daemon already running (pid {info['pid']})")
    clock.mark("daemon")

    checkout = home.root / "checkouts" / PROJECT
    _ensure_project(platform, principal, checkout, say)
    clock.mark("project")
    result = DemoResult(PROJECT, checkout, api_url=str(info["api_url"]))

    commit = _push_a_change(checkout)
    say(f"pushed {commit[:10]} to {PROJECT}'s main: the post-receive hook queued a CI build")
    build = _wait_run(platform, principal, lambda r: r.kind == "build" and r.commit == commit)
    result.runs.append(build.id)
    say(f"CI build {build.id} succeeded: unit tests passed, the pipeline trained and registered")
    clock.mark("build")

    first, *later = platform.env_names
    version = _newest_pending(platform, principal, first)
    from lockgate.registry import service as registry

    registry.set_status(
        platform,
        principal,
        version,
        "Approved",
        comment="demo: metrics reviewed",
        env=first,
    )
    say(f"approved {version} in {first}: the project's rule queues the deploy to {later[0]}")
    previous = build.id
    for env in later:
        deploy = _wait_deploy(platform, principal, env, after=previous)
        if deploy.status == "waiting":
            from lockgate.projects import ci

            say(f"deploy {deploy.id} into {env} waits for its required approvers: approving")
            ci.approve(platform, principal, deploy.id, comment="demo: preprod checks green")
            deploy = _wait_for_id(platform, principal, deploy.id)
        result.runs.append(deploy.id)
        say(
            f"CI deploy {deploy.id} into {env} succeeded: endpoint in service, endpoint tests and batch job passed"
        )
        clock.mark(f"deploy {env}")
        previous = deploy.id

    from lockgate.serving import service as endpoints

    last = later[-1]
    answer = endpoints.invoke(platform, principal, PROJECT, json.dumps([ROW]).encode(), env=last)
    result.prediction = json.loads(answer)
    gateways = (running(home) or {}).get("gateways", {})
    result.endpoints = {
        env: f"{gateways[env]}/endpoints/{PROJECT}/invocations" for env in later if env in gateways
    }
    result.seconds = clock.marks
    return result


def _ensure_project(
    platform: Platform, principal: Principal, checkout: Path, say: Callable[[str], None]
) -> None:
    from lockgate.projects import githost, service

    with platform.ready().store.read() as session:
        existing = db.get_project(session, PROJECT)
    if existing is None:
        if checkout.exists():
            import shutil

            shutil.rmtree(checkout)
        service.create(platform, principal, PROJECT, TEMPLATE, checkout=checkout)
        say(
            f"created project {PROJECT} from {TEMPLATE}: repository, CI principal, variables, "
            f"model group, deploy rule; working copy in {checkout}"
        )
        return
    if not (checkout / ".git").is_dir():
        githost.clone(Path(existing.repo), checkout)
    else:
        githost.git("pull", "--quiet", "origin", githost.DEFAULT_BRANCH, cwd=checkout)
    say(f"project {PROJECT} exists: using it (working copy in {checkout})")


def _push_a_change(checkout: Path) -> str:
    from lockgate.ids import isoformat, utcnow
    from lockgate.projects import githost

    notes = checkout / "NOTES.md"
    with notes.open("a") as f:
        f.write(f"- {isoformat(utcnow())}: trained again by `lockgate demo`\n")
    githost.git("add", "NOTES.md", cwd=checkout)
    githost.git("commit", "--quiet", "-m", "Train again (lockgate demo)", cwd=checkout)
    githost.git("push", "--quiet", "origin", githost.DEFAULT_BRANCH, cwd=checkout)
    return githost.git("rev-parse", "HEAD", cwd=checkout)


def _runs(platform: Platform, principal: Principal) -> list[db.CiRun]:
    from lockgate.projects import ci

    return [r for _, r in ci.list_runs(platform, principal, PROJECT, limit=200)]


def _wait_run(
    platform: Platform, principal: Principal, which: Callable[[db.CiRun], bool]
) -> db.CiRun:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = [r for r in _runs(platform, principal) if which(r)]
        if found and found[0].status in ("succeeded", "failed"):
            if found[0].status == "failed":
                raise ConflictError(
                    f"CI run {found[0].id} ({found[0].kind}) failed: {found[0].error}",
                    hint=f"See its log: lockgate ci logs {found[0].id}",
                )
            return found[0]
        time.sleep(0.2)
    raise ConflictError(
        f"the demo's CI run did not finish within {WAIT_S:.0f} s.",
        hint="See lockgate ci runs abalone, and the daemon's log in run/daemon.log.",
    )


def _wait_for_id(platform: Platform, principal: Principal, run_id: str) -> db.CiRun:
    return _wait_run(platform, principal, lambda r: r.id == run_id)


def _wait_deploy(platform: Platform, principal: Principal, env: str, *, after: str) -> db.CiRun:
    """The deploy into ``env`` queued after run ``after``: once it is waiting or done."""
    from lockgate.projects import ci

    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for run_env, run in ci.list_runs(platform, principal, PROJECT, limit=200):
            if run_env == env and run.kind == "deploy" and run.id > after:
                if run.status == "waiting":
                    return run
                if run.status in ("succeeded", "failed"):
                    return _wait_for_id(platform, principal, run.id)
        time.sleep(0.2)
    raise ConflictError(f"no deploy into {env} came within {WAIT_S:.0f} s.")


def _newest_pending(platform: Platform, principal: Principal, env: str) -> str:
    from lockgate.registry import service as registry

    versions = registry.versions(platform, principal, PROJECT, env=env)
    pending = [v for v in versions if v.status == "PendingManualApproval"]
    if not pending:
        raise ConflictError(
            f"the build registered no version of {PROJECT} awaiting approval in {env}."
        )
    return str(max(pending, key=lambda v: v.version).ref)


class _Clock:
    def __init__(self) -> None:
        self._start = time.monotonic()
        self.marks: dict[str, float] = {}

    def mark(self, what: str) -> None:
        self.marks[what] = round(time.monotonic() - self._start, 2)
