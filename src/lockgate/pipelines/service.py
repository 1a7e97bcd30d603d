"""The pipeline service: definitions (upsert, list, show, diff) and executions (run, describe,
logs, retry, stop, resume), cache explanations and lineage. Every call is authorised; every
mutation is audited."""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError as SQLAlchemyIntegrityError

from lockgate.auth import audit
from lockgate.auth.policy import authorize
from lockgate.auth.principal import Principal
from lockgate.errors import ConflictError, NotFoundError, ValidationError
from lockgate.ids import isoformat, new_id, utcnow
from lockgate.pipelines import cache, compiler
from lockgate.pipelines.code import snapshot
from lockgate.pipelines.sdk import coerce
from lockgate.platform import Environment, Platform
from lockgate.store import pipelines as db
from lockgate.store.pipelines import Execution, PipelineVersion

if TYPE_CHECKING:
    from lockgate.pipelines.executors.base import Executor
    from lockgate.pipelines.orchestrator import StepEvent


@dataclass(frozen=True)
class UpsertResult:
    version: PipelineVersion
    created: bool
    previous: int | None


def environment(platform: Platform, env: str | None) -> Environment:
    """``env`` (default: the first environment), ready for pipelines."""
    return platform.ready(env)


def _check(env: Environment, principal: Principal, permission: str, target: str) -> None:
    authorize(env.store, principal, permission, env=env.name, target=target)


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME@VERSION``."""
    name, _, version = ref.partition("@")
    if version and (not version.isdigit() or int(version) < 1):
        raise ValidationError(
            f"{ref!r} is not NAME or NAME@VERSION.", hint="For example: abalone@2."
        )
    return name, int(version) if version else None


def upsert(
    platform: Platform, principal: Principal, target: str, *, env: str | None = None
) -> UpsertResult:
    """Store the pipeline in ``FILE[:NAME]`` as a new version, only if it or its code changed."""
    handle = environment(platform, env)
    file_text, _, attribute = target.partition(":")
    file = Path(file_text)
    _check(handle, principal, "pipeline:write", str(file))
    module = compiler.load_module(file)
    pipeline = compiler.find_pipeline(module, attribute or None)
    root = file.resolve().parent
    definition = compiler.compile_pipeline(pipeline, root)
    code = snapshot(root)
    definition_digest = compiler.digest_of(compiler.canonical(definition))
    snapshot_digest = compiler.digest_of(code)
    with handle.store.transaction() as s:
        latest = db.latest_version(s, pipeline.name)
    if latest and (latest.definition_digest, latest.snapshot_digest) == (
        definition_digest,
        snapshot_digest,
    ):
        return UpsertResult(latest, False, latest.version)
    stored = handle.artifacts.put_bytes(code)
    assert stored == snapshot_digest
    with handle.store.transaction() as s:
        latest = db.latest_version(s, pipeline.name)
        version = PipelineVersion(
            pipeline.name,
            (latest.version if latest else 0) + 1,
            definition,
            definition_digest,
            snapshot_digest,
            isoformat(utcnow()),
            principal.name,
        )
        db.add_version(s, version)
        audit.record(
            s,
            actor=principal.name,
            action="pipeline.upsert",
            target=f"{pipeline.name}@{version.version}",
            details={"snapshot": snapshot_digest, "steps": len(definition["steps"])},
        )
    return UpsertResult(version, True, latest.version if latest else None)


def get_version(
    platform: Platform, principal: Principal, ref: str, *, env: str | None = None
) -> PipelineVersion:
    handle = environment(platform, env)
    _check(handle, principal, "pipeline:read", ref)
    name, number = parse_ref(ref)
    with handle.store.transaction() as s:
        found = (
            db.get_version(s, name, number) if number is not None else db.latest_version(s, name)
        )
    if found is None:
        raise NotFoundError(
            f"pipeline {ref} does not exist in {handle.name}.",
            hint="List pipelines with `lockgate pipeline list`; store one with `lockgate pipeline upsert FILE`.",
        )
    return found


def list_pipelines(
    platform: Platform, principal: Principal, *, env: str | None = None
) -> list[dict[str, Any]]:
    handle = environment(platform, env)
    _check(handle, principal, "pipeline:read", "pipelines")
    with handle.store.transaction() as s:
        rows = db.list_pipelines(s)
    return [
        {"name": n, "latest_version": v, "updated_at": at, "executions": c} for n, v, at, c in rows
    ]


def diff(
    platform: Platform, principal: Principal, a: str, b: str, *, env: str | None = None
) -> str:
    left, right = (
        get_version(platform, principal, a, env=env),
        get_version(platform, principal, b, env=env),
    )
    lines = difflib.unified_diff(
        compiler.canonical(left.definition).splitlines(keepends=True),
        compiler.canonical(right.definition).splitlines(keepends=True),
        fromfile=f"{left.pipeline}@{left.version}",
        tofile=f"{right.pipeline}@{right.version}",
    )
    text = "".join(lines)
    if left.snapshot_digest != right.snapshot_digest:
        text += f"code snapshot: {left.snapshot_digest} → {right.snapshot_digest}\n"
    return text


def validate_parameters(definition: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    declared = definition["parameters"]
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(f"{k} ({v['type']})" for k, v in declared.items()) or "none"
        raise ValidationError(
            f"pipeline {definition['name']!r} has no parameter {', '.join(map(repr, unknown))}.",
            hint=f"Its parameters: {known}.",
        )
    values = {}
    for name, spec in declared.items():
        if name in given:
            values[name] = coerce(name, spec["type"], given[name])
        elif spec["required"]:
            raise ValidationError(
                f"parameter {name!r} ({spec['type']}) is required.", hint=f"Pass -p {name}=VALUE."
            )
        else:
            values[name] = spec["default"]
    return values


def start(
    platform: Platform,
    principal: Principal,
    ref: str,
    parameters: dict[str, str],
    *,
    env: str | None = None,
    idempotency_key: str | None = None,
    project: str | None = None,
) -> Execution:
    """Create a pending execution of ``NAME[@VERSION]`` with ``parameters`` (validated).

    With an ``idempotency_key`` a second call returns the execution the first one created. With
    a ``project``, its steps get the project's variables and secrets in their environment.
    """
    version = get_version(platform, principal, ref, env=env)
    handle = environment(platform, env)
    _check(handle, principal, "pipeline:run", version.pipeline)
    values = validate_parameters(version.definition, parameters)
    execution = Execution(
        new_id(),
        version.pipeline,
        version.version,
        values,
        "pending",
        None,
        isoformat(utcnow()),
        principal.name,
        None,
        None,
        False,
        None,
        None,
        project,
    )
    try:
        with handle.store.transaction() as s:
            # Checked under the write lock (SQLite); on PostgreSQL two racing callers both pass
            # it and the unique key refuses the second insert, which then finds the first.
            earlier = db.execution_by_key(s, idempotency_key) if idempotency_key else None
            if earlier is not None:
                return earlier
            db.add_execution(
                s, execution, compiler.topological_order(version.definition), idempotency_key
            )
            audit.record(
                s,
                actor=principal.name,
                action="pipeline.run",
                target=execution.id,
                details={"pipeline": f"{version.pipeline}@{version.version}"},
            )
    except SQLAlchemyIntegrityError:
        if idempotency_key is None:
            raise
        with handle.store.read() as s:
            earlier = db.execution_by_key(s, idempotency_key)
        if earlier is None:
            raise
        return earlier
    return execution


#: Drivers started by this process and maybe still running (kept so they can be reaped).
_drivers: list[subprocess.Popen[bytes]] = []


def spawn_driver(platform: Platform, execution_id: str, env: str) -> Path:
    """Drive ``execution_id`` in a background process (``lockgate pipeline resume``).

    Returns its log file. Its lease keeps two drivers of one execution from both running it.
    """
    log_dir = platform.home.run_dir / env / "executions" / execution_id
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "orchestrator.log"
    # A long-lived caller (the event worker) spawns many: reap those that ended.
    _drivers[:] = [p for p in _drivers if p.poll() is None]
    with open(log_path, "ab") as log:
        driver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lockgate",
                "pipeline",
                "resume",
                execution_id,
                "--env",
                env,
                "--home",
                str(platform.home.root),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    _drivers.append(driver)
    return log_path


def new_executor(parallel: int | None = None) -> Executor:
    """The executor for runs on this machine (it starts warming up at once)."""
    from lockgate.pipelines.executors.local import LocalExecutor

    return LocalExecutor(max_parallel=parallel)


def drive(
    platform: Platform,
    principal: Principal,
    execution_id: str,
    *,
    env: str | None = None,
    on_event: Callable[[StepEvent], None] | None = None,
    parallel: int | None = None,
    executor: Executor | None = None,
) -> Execution:
    """Run (or resume) an execution in this process until it ends.

    Pass an ``executor`` built early (see :func:`new_executor`) so that its start-up overlaps
    the caller's own; it is shut down when the execution ends.
    """
    from lockgate.pipelines.orchestrator import Orchestrator

    handle = environment(platform, env)
    _check(handle, principal, "pipeline:run", execution_id)
    executor = executor or new_executor(parallel)
    orchestrator = Orchestrator(
        handle,
        execution_id,
        executor,
        platform.home.run_dir / handle.name,
        on_event=on_event or (lambda e: None),
    )
    try:
        return orchestrator.run()
    finally:
        # A lost lease means another orchestrator re-attached to our steps: leave them running.
        if not orchestrator.lease_lost:
            executor.shutdown()


def get_execution(
    platform: Platform, principal: Principal, execution_id: str, *, env: str | None = None
) -> Execution:
    handle = environment(platform, env)
    _check(handle, principal, "pipeline:read", execution_id)
    with handle.store.transaction() as s:
        found = db.get_execution(s, execution_id)
    if found is None:
        raise NotFoundError(
            f"execution {execution_id} does not exist in {handle.name}.",
            hint="List them with `lockgate pipeline executions`.",
        )
    return found


def list_executions(
    platform: Platform,
    principal: Principal,
    pipeline: str | None = None,
    *,
    env: str | None = None,
    limit: int = 20,
) -> list[Execution]:
    handle = environment(platform, env)
    _check(handle, principal, "pipeline:read", pipeline or "executions")
    with handle.store.transaction() as s:
        return db.list_executions(s, pipeline, limit)


def describe(
    platform: Platform, principal: Principal, execution_id: str, *, env: str | None = None
) -> dict[str, Any]:
    """The execution with its DAG: each step's kind, state, attempts, timings, output and reason."""
    execution = get_execution(platform, principal, execution_id, env=env)
    handle = environment(platform, env)
    with handle.store.transaction() as s:
        version = db.get_version(s, execution.pipeline, execution.version)
        runs = db.step_runs(s, execution_id)
    assert version is not None
    steps = []
    for name in compiler.topological_order(version.definition):
        step, run = version.definition["steps"][name], runs[name]
        entry: dict[str, Any] = {
            "name": name,
            "kind": step["kind"],
            "status": run.status,
            "attempt": run.attempt,
            "depends_on": step["depends_on"],
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "duration_s": run.duration_s,
            "output": {"type": run.output_type, "digest": run.output_digest}
            if run.output_digest
            else None,
            "cached_from": run.cached_from,
            "reason": run.reason,
        }
        if (
            run.output_type in ("Metrics", "json")
            and run.output_digest
            and run.status in ("succeeded", "cached")
        ):
            entry["value"] = json.loads(handle.artifacts.get_bytes(run.output_digest))
        steps.append(entry)
    return {
        "id": execution.id,
        "pipeline": execution.pipeline,
        "version": execution.version,
        "environment": handle.name,
        "status": execution.status,
        "reason": execution.reason,
        "parameters": execution.parameters,
        "created_at": execution.created_at,
        "created_by": execution.created_by,
        "started_at": execution.started_at,
        "finished_at": execution.finished_at,
        "steps": steps,
    }


def log_file(
    platform: Platform,
    principal: Principal,
    execution_id: str,
    step: str,
    *,
    env: str | None = None,
) -> Path:
    execution = get_execution(platform, principal, execution_id, env=env)
    handle = environment(platform, env)
    with handle.store.transaction() as s:
        runs = db.step_runs(s, execution.id)
    if step not in runs:
        raise NotFoundError(
            f"execution {execution_id} has no step {step!r}.", hint=f"Its steps: {', '.join(runs)}."
        )
    return platform.home.run_dir / handle.name / "executions" / execution_id / f"{step}.log"


def retry(
    platform: Platform, principal: Principal, execution_id: str, *, env: str | None = None
) -> Execution:
    """Queue the failed, stopped and skipped steps of a finished execution again."""
    execution = get_execution(platform, principal, execution_id, env=env)
    handle = environment(platform, env)
    _check(handle, principal, "pipeline:run", execution_id)
    if execution.status not in ("failed", "stopped"):
        raise ConflictError(
            f"execution {execution_id} is {execution.status}; only a failed or stopped one can be retried."
        )
    with handle.store.transaction() as s:
        for name, run in db.step_runs(s, execution_id).items():
            if run.status in ("failed", "skipped", "stopped"):
                db.update_step(
                    s,
                    execution_id,
                    name,
                    status="pending",
                    attempt=0,
                    reason=None,
                    not_before=None,
                    handle=None,
                    output_digest=None,
                    output_type=None,
                    finished_at=None,
                )
        db.update_execution(
            s, execution_id, status="pending", reason=None, finished_at=None, stop_requested=False
        )
        audit.record(s, actor=principal.name, action="pipeline.retry", target=execution_id)
    return get_execution(platform, principal, execution_id, env=env)


def stop(
    platform: Platform, principal: Principal, execution_id: str, *, env: str | None = None
) -> Execution:
    """Ask the orchestrator to stop; an execution nobody orchestrates is stopped here."""
    from lockgate.pipelines.leases import owner_is_gone

    execution = get_execution(platform, principal, execution_id, env=env)
    handle = environment(platform, env)
    _check(handle, principal, "pipeline:run", execution_id)
    if execution.status not in db.ACTIVE:
        raise ConflictError(f"execution {execution_id} is already {execution.status}.")
    with handle.store.transaction() as s:
        db.update_execution(s, execution_id, stop_requested=True, status="stopping")
        audit.record(s, actor=principal.name, action="pipeline.stop", target=execution_id)
    if execution.lease_owner is None or owner_is_gone(execution.lease_owner):
        # Nobody is orchestrating it: do it here, so that step processes a killed orchestrator
        # left running are found (re-attached) and stopped, not just marked stopped.
        return drive(platform, principal, execution_id, env=env)
    return get_execution(platform, principal, execution_id, env=env)


def explain_cache(
    platform: Platform,
    principal: Principal,
    execution_id: str,
    step: str,
    *,
    env: str | None = None,
) -> dict[str, Any]:
    """Why ``step`` hit or missed the cache in this execution."""
    execution = get_execution(platform, principal, execution_id, env=env)
    handle = environment(platform, env)
    with handle.store.transaction() as s:
        runs = db.step_runs(s, execution_id)
        if step not in runs:
            raise NotFoundError(
                f"execution {execution_id} has no step {step!r}.",
                hint=f"Its steps: {', '.join(runs)}.",
            )
        run = runs[step]
        previous = db.latest_cache_entry(s, execution.pipeline, step, before=execution_id)
    if run.cache_components is None:
        return {
            "step": step,
            "result": "not applicable",
            "reasons": [
                f"the step is {run.status} and has no cache key ({run.reason or 'never ran'})"
            ],
        }
    if run.status == "cached":
        return {
            "step": step,
            "result": "hit",
            "cache_key": run.cache_key,
            "reasons": [
                f"same key as the run in execution {run.cached_from}: code, inputs, parameters and settings all unchanged"
            ],
        }
    prior = previous["components"] if previous else None
    return {
        "step": step,
        "result": "miss",
        "cache_key": run.cache_key,
        "compared_with": previous["execution_id"] if previous else None,
        "reasons": cache.explain(run.cache_components, prior),
    }


def lineage(
    platform: Platform, principal: Principal, digest: str, *, env: str | None = None
) -> dict[str, Any]:
    """Where an artifact came from (recursively) and what was made from it."""
    handle = environment(platform, env)
    _check(handle, principal, "pipeline:read", digest)
    with handle.store.transaction() as s:
        root = db.get_artifact(s, digest)
        if root is None:
            raise NotFoundError(
                f"no artifact {digest} is recorded in {handle.name}.",
                hint="Digests are shown by `lockgate pipeline describe EXEC`.",
            )

        def upstream(node: dict[str, Any], depth: int) -> dict[str, Any]:
            parents = []
            for arg, parent in node["inputs"].items():
                found = db.get_artifact(s, parent) if depth < 50 else None
                parents.append(
                    {
                        "argument": arg,
                        **(upstream(found, depth + 1) if found else {"digest": parent}),
                    }
                )
            return {**node, "inputs": parents}

        downstream = db.consumers_of(s, digest)
        return {"artifact": upstream(root, 0), "used_by": downstream}
