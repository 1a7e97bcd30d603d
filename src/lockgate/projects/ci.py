"""CI runs: queued by a push (the repository's post-receive hook), by an automation rule or by a
finished run; run by the daemon's CI worker in a fresh checkout of their commit.

A run lives in the store of the environment it acts in (a build in the first one). A deploy
into an environment whose protection rules name required approvers waits until one of them runs
``lockgate ci approve RUN`` (audited). Runs are claimed with a lease: a run whose worker died is
picked up again (its steps are idempotent: promotion, endpoint updates and keyed starts).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import IntegrityError as SQLAlchemyIntegrityError

from lockgate.auth import audit
from lockgate.auth.principal import Principal
from lockgate.errors import (
    ConflictError,
    LockgateError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from lockgate.ids import isoformat, new_id, utcnow
from lockgate.platform import Environment, Platform
from lockgate.projects import githost
from lockgate.projects.citools import CiLog, StepFailed, log_path
from lockgate.store import projects as db

LEASE_S = 60.0
#: A run whose worker died is picked up again, this many times in all.
MAX_ATTEMPTS = 3
#: The most of a run's output kept in the store (the tail).
LOG_LIMIT = 1_000_000
SYSTEM = "service:lockgate"


def _footprint(env: Environment, project: str) -> db.Project:
    with env.store.read() as session:
        found = db.get_project(session, project)
    if found is None:
        raise NotFoundError(
            f"project {project} has no deployment environment {env.name}.",
            hint=f"See its environments: lockgate project show {project}",
        )
    return found


def enqueue(
    platform: Platform,
    project: str,
    kind: str,
    env: str,
    *,
    trigger: str,
    key: str | None = None,
    commit: str | None = None,
    created_by: str = SYSTEM,
    inputs: dict[str, str] | None = None,
) -> db.CiRun:
    """Queue a run (waiting for approval when ``env`` requires it); with ``key``, at most once."""
    if kind not in ("build", "deploy", "test"):
        raise ValidationError(f"CI run kind {kind!r} is not build, deploy or test.")
    handle = platform.ready(env)
    footprint = _footprint(handle, project)
    if kind == "build" and env != footprint.environments[0]:
        raise ValidationError(f"{project} builds in {footprint.environments[0]}, not {env}.")
    commit = commit or githost.head(Path(footprint.repo))
    approvers = footprint.required_approvers if kind == "deploy" else []
    run = db.CiRun(
        new_id(),
        project,
        kind,
        "waiting" if approvers else "queued",
        commit,
        trigger,
        approvers,
        footprint.ci_principal,
        isoformat(utcnow()),
        created_by,
        idempotency_key=key,
        inputs=inputs,
    )
    try:
        with handle.store.transaction() as session:
            if key is not None and (earlier := db.run_by_key(session, key)) is not None:
                return earlier
            db.add_run(session, run)
            audit.record(
                session,
                actor=created_by,
                action="ci.queue",
                target=run.id,
                details={
                    "project": project,
                    "kind": kind,
                    "status": run.status,
                    "trigger": trigger,
                },
            )
    except SQLAlchemyIntegrityError:
        # On PostgreSQL two racing callers both pass the check; the unique key keeps one.
        if key is None:
            raise
        with handle.store.read() as session:
            earlier = db.run_by_key(session, key)
        if earlier is None:
            raise
        return earlier
    return run


def queue_commit(
    platform: Platform, principal: Principal, project: str, kind: str, env: str, commit: str
) -> db.CiRun:
    """A remote ``ci KIND`` of a pushed ``commit`` (``POST …/projects/P/ci/KIND``): the caller is
    the project's CI principal in ``env`` or holds ``project:write`` there."""
    from lockgate.auth.policy import authorize

    if kind not in ("build", "deploy", "test"):
        raise ValidationError(f"{kind!r} is not build, deploy or test.")
    handle = platform.ready(env)
    with handle.store.read() as session:
        footprint = db.get_project(session, project)
    if footprint is None or footprint.ci_principal != principal.name:
        authorize(handle.store, principal, "project:write", env=env, target=project)
    if footprint is None:
        raise NotFoundError(f"project {project} has no deployment environment {env}.")
    if githost.git("cat-file", "-t", commit, cwd=Path(footprint.repo), check=False) != "commit":
        raise ValidationError(
            f"{commit} is not a commit of {project}'s repository.",
            hint="Push it first: the daemon builds what its git host holds.",
        )
    return enqueue(
        platform,
        project,
        kind,
        env,
        trigger=f"remote by {principal.name}",
        commit=commit,
        created_by=principal.name,
    )


def trigger_push(
    platform: Platform, principal: Principal, project: str, lines: list[str]
) -> list[db.CiRun]:
    """The post-receive hook: a build for each push that moved ``main`` (the pusher needs
    ``project:write``; a refusal is audited and told to the pusher)."""
    from lockgate.auth.policy import authorize

    first = platform.env_names[0]
    authorize(platform.ready(first).store, principal, "project:write", env=first, target=project)
    pusher = principal.name
    runs = []
    for line in lines:
        parts = line.split()
        if len(parts) != 3:
            continue
        _, new, ref = parts
        if ref != f"refs/heads/{githost.DEFAULT_BRANCH}" or set(new) == {"0"}:
            continue
        runs.append(
            enqueue(
                platform,
                project,
                "build",
                first,
                trigger=f"push by {pusher}",
                commit=new,
                created_by=pusher,
            )
        )
    return runs


def find(platform: Platform, run_id: str) -> tuple[Environment, db.CiRun]:
    for env in platform.env_names:
        handle = platform.ready(env)
        with handle.store.read() as session:
            found = db.get_run(session, run_id)
        if found is not None:
            return handle, found
    raise NotFoundError(f"there is no CI run {run_id}.", hint="List them: lockgate ci runs")


def list_runs(
    platform: Platform, principal: Principal, project: str | None = None, limit: int = 50
) -> list[tuple[str, db.CiRun]]:
    from lockgate.auth.policy import is_allowed

    out = []
    for env in platform.env_names:
        handle = platform.ready(env)
        if not is_allowed(handle.store, principal, "project:read"):
            continue
        with handle.store.read() as session:
            out += [(env, r) for r in db.list_runs(session, project, limit)]
    out.sort(key=lambda pair: pair[1].id, reverse=True)
    return out[:limit]


def get(platform: Platform, principal: Principal, run_id: str) -> tuple[str, db.CiRun]:
    from lockgate.auth.policy import authorize

    handle, run = find(platform, run_id)
    authorize(handle.store, principal, "project:read", env=handle.name, target=run_id)
    return handle.name, run


def log_text(platform: Platform, principal: Principal, run_id: str) -> str:
    """The run's output so far (the live file while it runs, the stored copy after)."""
    _, run = get(platform, principal, run_id)
    live = log_path(platform.home, run_id)
    if run.status == "running" and live.is_file():
        return live.read_text(errors="replace")
    return run.log or (
        ""
        if run.status in ("waiting", "queued")
        else live.read_text(errors="replace")
        if live.is_file()
        else ""
    )


def approve(
    platform: Platform, principal: Principal, run_id: str, *, comment: str = ""
) -> db.CiRun:
    """Release a waiting deploy; only one of its required approvers may."""
    handle, run = find(platform, run_id)
    if run.status != "waiting":
        raise ConflictError(
            f"CI run {run_id} is {run.status}; only a waiting run is approved.",
            hint=f"See it: lockgate ci runs {run.project}",
        )
    from lockgate.auth.policy import is_allowed

    if principal.name not in run.approvers or not is_allowed(
        handle.store, principal, "model:approve"
    ):
        audit.record_refusal(
            handle.store,
            actor=principal.name,
            action="ci.approve",
            target=run_id,
            reason="not a required approver",
        )
        raise PermissionDeniedError(
            f"{principal} is not a required approver of {run.project}'s {handle.name} environment.",
            hint=f"Its approvers: {', '.join(run.approvers)}.",
        )
    now = isoformat(utcnow())
    with handle.store.transaction() as session:
        current = db.get_run(session, run_id)
        assert current is not None
        if current.status != "waiting":
            raise ConflictError(f"CI run {run_id} is {current.status} now; nothing to approve.")
        db.change_run(session, run_id, status="queued", approved_by=principal.name, approved_at=now)
        audit.record(
            session,
            actor=principal.name,
            action="ci.approve",
            target=run_id,
            details={"project": run.project, "environment": handle.name, "comment": comment},
        )
        approved = db.get_run(session, run_id)
    assert approved is not None
    return approved


# --- running ------------------------------------------------------------------------------------


def work_once(
    platform: Platform, owner: str, *, isolate: bool = False, stop: threading.Event | None = None
) -> str | None:
    """Claim one due run in any environment and run it (in a child process with ``isolate``);
    its id, or None when none was due."""
    for env in platform.env_names:
        try:
            handle = platform.ready(env)
            with handle.store.transaction() as session:
                db.fail_abandoned(session, isoformat(utcnow()))
                run = db.claim_run(session, owner, LEASE_S)
        except Exception as exc:  # noqa: BLE001 - one store down must not stop the others' CI
            logging.getLogger("lockgate.ci").warning("CI worker: %s: %s", env, exc)
            continue
        if run is not None and run.attempts > MAX_ATTEMPTS:
            with handle.store.transaction() as session:
                db.finish_run(
                    session,
                    run.id,
                    owner,
                    status="failed",
                    error=f"gave up after {MAX_ATTEMPTS} attempts (each worker died or lost its lease)",
                    finished_at=isoformat(utcnow()),
                )
            return run.id
        if run is not None:
            if isolate:
                _execute_in_child(platform, run.id, owner, stop)
            else:
                execute(platform, handle, run, owner)
            return run.id
    return None


def _execute_in_child(
    platform: Platform, run_id: str, owner: str, stop: threading.Event | None
) -> None:
    """Run the claimed run in a child process: the project's code (unit tests, its pipeline
    module) never runs inside the daemon. A daemon told to stop ends the child; the run's lease
    then expires and it runs again later."""
    child_path = log_path(platform.home, run_id).with_suffix(".child.log")
    child_path.parent.mkdir(parents=True, exist_ok=True)
    child_log = open(child_path, "ab")  # noqa: SIM115 - handed to the child, closed after
    child = subprocess.Popen(
        [sys.executable, "-m", "lockgate", "ci", "exec", run_id, "--owner", owner],
        env={**os.environ, "LOCKGATE_HOME": str(platform.home.root)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=child_log,
    )
    child_log.close()
    while child.poll() is None:
        if stop is not None and stop.wait(0.2):
            child.terminate()
            child.wait()
            return
    handle, run = find(platform, run_id)
    if run.status == "running":  # the child died before it could record an outcome
        with handle.store.transaction() as session:
            db.finish_run(
                session,
                run_id,
                owner,
                status="failed",
                error=f"the CI process exited with code {child.returncode} before it finished "
                f"(its output: {log_path(platform.home, run_id).with_suffix('.child.log')})",
                finished_at=isoformat(utcnow()),
            )


def execute(
    platform: Platform,
    env: Environment,
    run: db.CiRun,
    owner: str,
    *,
    root: Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> str:
    """Run ``run`` (already claimed by ``owner``) as its ``run_as``, in a fresh checkout of its
    commit (or in ``root``, a checkout the caller already has); its final status."""
    from lockgate.projects import ci_steps

    stop, lost = threading.Event(), threading.Event()
    renewer = threading.Thread(target=_renew, args=(env, run.id, owner, stop, lost), daemon=True)
    renewer.start()
    log = CiLog(
        log_path(platform.home, run.id),
        secrets=ci_steps.secret_values(env, run.project),
        echo=echo,
    )
    status, error = "failed", None
    with env.store.transaction() as session:
        db.change_run(session, run.id, started_at=isoformat(utcnow()))
    try:
        log.section(
            f"{run.kind} of {run.project} in {env.name} at {run.commit or '(working tree)'}, "
            f"as {run.run_as} (run {run.id})"
        )
        with tempfile.TemporaryDirectory(prefix=f"lockgate-ci-{run.id}-") as scratch:
            checkout = root
            if checkout is None:
                checkout = Path(scratch) / run.project
                githost.clone(Path(_footprint(env, run.project).repo), checkout, ref=run.commit)
            ctx = ci_steps.Context(
                platform,
                Principal(run.run_as),
                checkout,
                log,
                run.id,
                run.project,
                run.commit,
                run.inputs or {},
            )
            ci_steps.run(ctx, run.kind, env.name)
        status = "succeeded"
    except StepFailed as exc:
        error = str(exc)
    except LockgateError as exc:
        error = f"{type(exc).__name__}: {exc.message}"
    except Exception as exc:  # noqa: BLE001 - a CI run records any failure as its outcome
        error = f"{type(exc).__name__}: {exc}"
    finally:
        stop.set()
        renewer.join()
    if error:
        error = log.mask(error)
        log.line(f"FAILED: {error}")
    if lost.is_set():
        log.line("this worker lost the run's lease: another one took it over; outcome not recorded")
    log.line(f"run {run.id} {status}")
    text = log.close()
    with env.store.transaction() as session:
        recorded = db.finish_run(
            session,
            run.id,
            owner,
            status=status,
            error=error,
            finished_at=isoformat(utcnow()),
            log=text[-LOG_LIMIT:],
        )
        if not recorded:  # fenced: the run is another worker's now
            return "superseded"
        audit.record(
            session,
            actor=run.run_as,
            action=f"ci.{run.kind}",
            target=run.id,
            outcome="ok" if status == "succeeded" else "failed",
            details={"project": run.project, "error": error},
        )
    return status


def run_here(
    platform: Platform,
    principal: Principal,
    kind: str,
    env: str | None,
    root: Path,
    *,
    echo: Callable[[str], None] | None = None,
) -> db.CiRun:
    """``lockgate ci KIND`` in a checkout: run now as ``principal`` on the working tree, or —
    for a deploy into an environment with required approvers — queue it waiting for them (the
    daemon runs it once approved)."""
    from lockgate.projects.manifest import load

    config = load(root)
    env = env or config.environments[0]
    if env not in config.environments:
        raise ValidationError(
            f"{env} is not a deployment environment of {config.project} ({', '.join(config.environments)})."
        )
    handle = platform.ready(env)
    footprint = _footprint(handle, config.project)
    commit = githost.git("rev-parse", "HEAD", cwd=root, check=False) or None
    if kind == "deploy" and footprint.required_approvers:
        return enqueue(
            platform,
            config.project,
            kind,
            env,
            trigger="ci deploy (by hand)",
            commit=commit,
            created_by=principal.name,
        )
    owner = f"cli:{os.getpid()}:{new_id()}"
    run = db.CiRun(
        new_id(),
        config.project,
        kind,
        "running",
        commit,
        db.BY_HAND,
        [],
        principal.name,
        isoformat(utcnow()),
        principal.name,
        attempts=1,
    )
    with handle.store.transaction() as session:
        db.add_run(session, run)
        db.change_run(session, run.id, lease_owner=owner, lease_expires_at=time.time() + LEASE_S)
    execute(platform, handle, run, owner, root=root, echo=echo)
    return get(platform, principal, run.id)[1]


def exec_claimed(platform: Platform, run_id: str, owner: str) -> str:
    """The CI worker's child process: run ``run_id`` if ``owner`` still holds its claim."""
    handle, run = find(platform, run_id)
    with handle.store.read() as session:
        from lockgate.store.tables import CiRunRow

        row = session.get(CiRunRow, run_id)
        holder = row.lease_owner if row is not None else None
    if run.status != "running" or holder != owner:
        raise ConflictError(f"CI run {run_id} is not claimed by {owner}; another worker has it.")
    return execute(platform, handle, run, owner)


def _renew(
    env: Environment, run_id: str, owner: str, stop: threading.Event, lost: threading.Event
) -> None:
    while not stop.wait(LEASE_S / 3):
        with env.store.transaction() as session:
            if not db.renew_run(session, run_id, owner, LEASE_S):
                lost.set()
                return


def worker(platform: Platform, stop: threading.Event, owner: str | None = None) -> None:
    """The daemon's CI worker: run due runs one at a time until ``stop``."""
    import logging

    owner = owner or f"ci:{os.getpid()}:{new_id()}"
    log = logging.getLogger("lockgate.ci")
    while not stop.is_set():
        try:
            ran = work_once(platform, owner, isolate=True, stop=stop)
        except LockgateError as exc:
            log.warning("CI worker: %s", exc.message)
            ran = None
        except Exception:
            log.exception("CI worker: unexpected error; trying again")
            ran = None
        if ran is None:
            stop.wait(0.5)


def wait_for(
    platform: Platform,
    principal: Principal,
    run_id: str,
    timeout: float,
    *,
    until_done: bool = False,
) -> db.CiRun:
    """Block until ``run_id`` is no longer queued or running — nor waiting, with
    ``until_done`` — or ``timeout`` passes."""
    pending = ("waiting", "queued", "running") if until_done else ("queued", "running")
    deadline = time.monotonic() + timeout
    while True:
        _, run = get(platform, principal, run_id)
        if run.status not in pending or time.monotonic() > deadline:
            return run
        time.sleep(0.3)
