"""Pipeline schedules: run a pipeline on a cron expression (UTC), from the daemon.

Each schedule remembers the last slot it ran for. A tick looks for the newest slot at or before
now; if it is later than the last one, it starts one execution for it — so a run missed while
the daemon was down runs once when it comes back, not once per missed slot. The execution is
keyed by ``schedule:NAME:SLOT``, so two ticks (or two daemons) never start the same run twice.
The run acts as the schedule's creator, who must still hold ``pipeline:run``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from lockgate.auth import audit
from lockgate.auth.policy import authorize
from lockgate.auth.principal import Principal
from lockgate.config.names import check_name
from lockgate.errors import ConflictError, LockgateError, NotFoundError, ValidationError
from lockgate.ids import isoformat, utcnow
from lockgate.pipelines import service
from lockgate.platform import Platform
from lockgate.store import schedules as db
from lockgate.store.pipelines import Execution
from lockgate.store.schedules import Schedule

log = logging.getLogger("lockgate.schedules")

CRON_HELP = (
    "five fields, minute hour day-of-month month day-of-week, in UTC: '0 6 * * *' is daily at "
    "06:00, '*/15 * * * *' every 15 minutes, '0 2 * * 1' Mondays at 02:00"
)


@dataclass(frozen=True)
class Fired:
    environment: str
    schedule: str
    slot: str
    execution: Execution | None
    error: str | None = None


def _check_cron(cron: str) -> str:
    from croniter import croniter

    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise ValidationError(f"{cron!r} is not a cron expression.", hint=f"Use {CRON_HELP}.")
    return cron


def latest_slot(cron: str, now: datetime) -> datetime:
    """The newest slot of ``cron`` at or before ``now``."""
    from croniter import croniter

    itr = croniter(cron, now)
    if croniter.match(cron, now):
        return now.replace(second=0, microsecond=0)
    return itr.get_prev(datetime)  # type: ignore[no-any-return]


def next_slot(cron: str, now: datetime) -> datetime:
    from croniter import croniter

    return croniter(cron, now).get_next(datetime)  # type: ignore[no-any-return]


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def create(
    platform: Platform,
    principal: Principal,
    name: str,
    pipeline: str,
    cron: str,
    parameters: dict[str, str],
    *,
    env: str | None = None,
) -> Schedule:
    """A new schedule (a :class:`ConflictError` when the name is taken)."""
    handle = service.environment(platform, env)
    version = service.get_version(platform, principal, pipeline, env=handle.name)
    service.validate_parameters(version.definition, parameters)
    return _put(handle.name, platform, principal, name, pipeline, cron, parameters, None, new=True)


def put_pipeline(
    platform: Platform,
    principal: Principal,
    name: str,
    pipeline: str,
    cron: str,
    parameters: dict[str, str],
    *,
    env: str | None = None,
) -> Schedule:
    """Create the schedule, or change an existing one to this pipeline, cron and parameters
    (what a project's CI keeps); the slots it already ran stay run."""
    handle = service.environment(platform, env)
    version = service.get_version(platform, principal, pipeline, env=handle.name)
    service.validate_parameters(version.definition, parameters)
    return _put(handle.name, platform, principal, name, pipeline, cron, parameters, None)


def put_batch(
    platform: Platform,
    principal: Principal,
    name: str,
    group: str,
    cron: str,
    *,
    input_uri: str,
    output_uri: str,
    env: str | None = None,
) -> Schedule:
    """A batch job on a cron schedule: each slot scores ``input_uri`` with the newest approved
    version of ``group`` into ``output_uri/SLOT``."""
    handle = service.environment(platform, env)
    authorize(handle.store, principal, "batch:run", env=handle.name, target=name)
    batch = {"group": group, "input": input_uri, "output": output_uri}
    return _put(handle.name, platform, principal, name, group, cron, {}, batch)


def _put(
    env: str,
    platform: Platform,
    principal: Principal,
    name: str,
    target: str,
    cron: str,
    parameters: dict[str, str],
    batch: dict[str, str] | None,
    *,
    new: bool = False,
) -> Schedule:
    handle = platform.env(env)
    check_name(name, "schedule")
    authorize(handle.store, principal, "pipeline:write", env=handle.name, target=name)
    _check_cron(cron)
    with handle.store.transaction() as session:
        existing = db.get(session, name)
        if existing is not None and new:
            raise ConflictError(
                f"schedule {name} already exists in {handle.name}.",
                hint=f"Delete it first (lockgate schedule delete {name}) or pick another name.",
            )
        if existing is not None and existing.created_by != principal.name:
            raise ConflictError(
                f"schedule {name} in {handle.name} belongs to {existing.created_by}; "
                f"{principal} may not take it over (its runs act as its creator).",
                hint="Rename one of them.",
            )
        if existing is None:
            schedule = Schedule(
                name,
                target,
                cron,
                parameters,
                False,
                None,
                None,
                isoformat(utcnow()),
                principal.name,
                batch,
            )
            db.add(session, schedule)
        else:
            db.change(
                session,
                name,
                pipeline=target,
                cron=cron,
                parameters=json.dumps(parameters, sort_keys=True),
                batch=json.dumps(batch, sort_keys=True) if batch else None,
            )
        audit.record(
            session,
            actor=principal.name,
            action="schedule.create" if existing is None else "schedule.update",
            target=name,
            details={"target": target, "cron": cron, "batch": batch is not None},
        )
        stored = db.get(session, name)
    assert stored is not None
    return stored


def list_schedules(
    platform: Platform, principal: Principal, *, env: str | None = None
) -> list[Schedule]:
    handle = service.environment(platform, env)
    authorize(handle.store, principal, "pipeline:read", env=handle.name, target="schedules")
    with handle.store.read() as session:
        return db.list_all(session)


def _existing(platform: Platform, principal: Principal, name: str, env: str | None) -> str:
    handle = service.environment(platform, env)
    authorize(handle.store, principal, "pipeline:write", env=handle.name, target=name)
    with handle.store.read() as session:
        if db.get(session, name) is None:
            raise NotFoundError(
                f"no schedule {name} in {handle.name}.",
                hint=f"List them: lockgate schedule list --env {handle.name}",
            )
    return handle.name


def set_paused(
    platform: Platform, principal: Principal, name: str, paused: bool, *, env: str | None = None
) -> None:
    handle = platform.env(_existing(platform, principal, name, env))
    with handle.store.transaction() as session:
        db.change(session, name, paused=paused)
        action = "schedule.pause" if paused else "schedule.resume"
        audit.record(session, actor=principal.name, action=action, target=name)


def delete(platform: Platform, principal: Principal, name: str, *, env: str | None = None) -> None:
    handle = platform.env(_existing(platform, principal, name, env))
    with handle.store.transaction() as session:
        db.remove(session, name)
        audit.record(session, actor=principal.name, action="schedule.delete", target=name)


def tick(platform: Platform, now: datetime | None = None) -> list[Fired]:
    """Start what is due in every environment; what was started (or failed to start)."""
    moment = now or datetime.now(UTC)
    fired = []
    for env in platform.env_names:
        handle = platform.ready(env)
        with handle.store.read() as session:
            due = db.list_all(session)
        for schedule in due:
            if schedule.paused:
                continue
            slot = latest_slot(schedule.cron, moment)
            since = _parse(schedule.last_slot or schedule.created_at)
            if slot <= since:
                continue
            fired.append(_fire(platform, env, schedule, slot))
    return fired


def _fire(platform: Platform, env: str, schedule: Schedule, slot: datetime) -> Fired:
    slot_text = isoformat(slot)
    execution: Execution | None = None
    error = None
    if schedule.batch is not None:
        return _fire_batch(platform, env, schedule, slot)
    try:
        execution = service.start(
            platform,
            Principal(schedule.created_by),
            schedule.pipeline,
            schedule.parameters,
            env=env,
            idempotency_key=f"schedule:{schedule.name}:{slot_text}",
        )
    except LockgateError as exc:  # e.g. its creator lost pipeline:run: say so, try next slot
        error = exc.message
        log.warning("schedule %s in %s, slot %s: %s", schedule.name, env, slot_text, exc.message)
    with platform.env(env).store.transaction() as session:
        db.change(
            session,
            schedule.name,
            last_slot=slot_text,
            last_execution=execution.id if execution else None,
        )
    return Fired(env, schedule.name, slot_text, execution, error)


def _fire_batch(platform: Platform, env: str, schedule: Schedule, slot: datetime) -> Fired:
    """Start the slot's batch job with the newest approved version of the group."""
    from lockgate.registry import service as registry
    from lockgate.serving import batch_service

    assert schedule.batch is not None
    slot_text = isoformat(slot)
    principal = Principal(schedule.created_by)
    job_id, error = None, None
    try:
        group = schedule.batch["group"]
        approved = [
            v
            for v in registry.versions(platform, principal, group, env=env)
            if v.status == registry.APPROVED
        ]
        if not approved:
            raise NotFoundError(f"{group} has no approved version in {env}.")
        newest = max(approved, key=lambda v: v.version)
        output = f"{schedule.batch['output']}/{slot.strftime('%Y%m%dT%H%M%SZ')}"
        job = batch_service.start(
            platform, principal, newest.ref, schedule.batch["input"], output, env=env
        )
        job_id = job.id
    except LockgateError as exc:
        error = exc.message
        log.warning("schedule %s in %s, slot %s: %s", schedule.name, env, slot_text, exc.message)
    with platform.env(env).store.transaction() as session:
        db.change(session, schedule.name, last_slot=slot_text, last_execution=job_id)
    return Fired(env, schedule.name, slot_text, None, error)
