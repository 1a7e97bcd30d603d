"""Pipeline versions, executions, step runs, lineage and cache entries as stored."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from lockgate.store.tables import (
    ArtifactRow,
    CacheEntryRow,
    ExecutionRow,
    PipelineVersionRow,
    StepRunRow,
)

ACTIVE = ("pending", "running", "stopping")


@dataclass(frozen=True)
class PipelineVersion:
    pipeline: str
    version: int
    definition: dict[str, Any]
    definition_digest: str
    snapshot_digest: str
    created_at: str
    created_by: str
    promoted_from: dict[str, Any] | None = None


@dataclass(frozen=True)
class Execution:
    id: str
    pipeline: str
    version: int
    parameters: dict[str, Any]
    status: str
    reason: str | None
    created_at: str
    created_by: str
    started_at: str | None
    finished_at: str | None
    stop_requested: bool
    lease_owner: str | None
    lease_expires_at: float | None
    project: str | None = None


@dataclass(frozen=True)
class StepRun:
    execution_id: str
    step: str
    status: str
    attempt: int
    cache_key: str | None
    cache_components: dict[str, Any] | None
    cached_from: str | None
    output_type: str | None
    output_digest: str | None
    reason: str | None
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    handle: dict[str, Any] | None
    not_before: float | None


def _version(row: PipelineVersionRow) -> PipelineVersion:
    return PipelineVersion(
        row.pipeline,
        row.version,
        json.loads(row.definition),
        row.definition_digest,
        row.snapshot_digest,
        row.created_at,
        row.created_by,
        None if row.promoted_from is None else json.loads(row.promoted_from),
    )


def _execution(row: ExecutionRow) -> Execution:
    return Execution(
        row.id,
        row.pipeline,
        row.version,
        json.loads(row.parameters),
        row.status,
        row.reason,
        row.created_at,
        row.created_by,
        row.started_at,
        row.finished_at,
        row.stop_requested,
        row.lease_owner,
        row.lease_expires_at,
        row.project,
    )


def _step_run(row: StepRunRow) -> StepRun:
    return StepRun(
        row.execution_id,
        row.step,
        row.status,
        row.attempt,
        row.cache_key,
        json.loads(row.cache_components) if row.cache_components else None,
        row.cached_from,
        row.output_type,
        row.output_digest,
        row.reason,
        row.started_at,
        row.finished_at,
        row.duration_s,
        json.loads(row.handle) if row.handle else None,
        row.not_before,
    )


# ---------------------------------------------------------------- versions


def latest_version(session: Session, pipeline: str) -> PipelineVersion | None:
    row = session.scalars(
        select(PipelineVersionRow)
        .where(PipelineVersionRow.pipeline == pipeline)
        .order_by(PipelineVersionRow.version.desc())
        .limit(1)
    ).first()
    return None if row is None else _version(row)


def get_version(session: Session, pipeline: str, version: int) -> PipelineVersion | None:
    row = session.get(PipelineVersionRow, (pipeline, version))
    return None if row is None else _version(row)


def add_version(session: Session, version: PipelineVersion) -> None:
    session.add(
        PipelineVersionRow(
            pipeline=version.pipeline,
            version=version.version,
            definition=json.dumps(version.definition, sort_keys=True),
            definition_digest=version.definition_digest,
            snapshot_digest=version.snapshot_digest,
            created_at=version.created_at,
            created_by=version.created_by,
            promoted_from=None
            if version.promoted_from is None
            else json.dumps(version.promoted_from, sort_keys=True),
        )
    )


def list_versions(session: Session, pipeline: str) -> list[PipelineVersion]:
    query = select(PipelineVersionRow).where(PipelineVersionRow.pipeline == pipeline)
    return [_version(r) for r in session.scalars(query.order_by(PipelineVersionRow.version))]


def list_pipelines(session: Session) -> list[tuple[str, int, str, int]]:
    """``(name, latest version, latest created_at, execution count)`` per pipeline."""
    latest = (
        select(PipelineVersionRow.pipeline, func.max(PipelineVersionRow.version).label("v"))
        .group_by(PipelineVersionRow.pipeline)
        .subquery()
    )
    rows = session.execute(
        select(
            PipelineVersionRow.pipeline, PipelineVersionRow.version, PipelineVersionRow.created_at
        )
        .join(
            latest,
            (latest.c.pipeline == PipelineVersionRow.pipeline)
            & (latest.c.v == PipelineVersionRow.version),
        )
        .order_by(PipelineVersionRow.pipeline)
    ).all()
    counts = dict(
        session.execute(
            select(ExecutionRow.pipeline, func.count()).group_by(ExecutionRow.pipeline)
        ).all()
    )
    return [(name, version, created, int(counts.get(name, 0))) for name, version, created in rows]


# ---------------------------------------------------------------- executions


def add_execution(
    session: Session,
    execution: Execution,
    steps: list[str],
    idempotency_key: str | None = None,
) -> None:
    session.add(
        ExecutionRow(
            idempotency_key=idempotency_key,
            id=execution.id,
            pipeline=execution.pipeline,
            version=execution.version,
            parameters=json.dumps(execution.parameters, sort_keys=True),
            status=execution.status,
            reason=None,
            created_at=execution.created_at,
            created_by=execution.created_by,
            stop_requested=False,
            project=execution.project,
        )
    )
    for name in steps:
        session.add(StepRunRow(execution_id=execution.id, step=name, status="pending", attempt=0))


def active_executions(session: Session) -> list[Execution]:
    """Executions not finished yet (pending, running or stopping), oldest first."""
    query = select(ExecutionRow).where(ExecutionRow.status.in_(ACTIVE)).order_by(ExecutionRow.id)
    return [_execution(r) for r in session.scalars(query)]


def execution_by_key(session: Session, idempotency_key: str) -> Execution | None:
    row = session.scalar(
        select(ExecutionRow).where(ExecutionRow.idempotency_key == idempotency_key)
    )
    return None if row is None else _execution(row)


def get_execution(session: Session, execution_id: str) -> Execution | None:
    row = session.get(ExecutionRow, execution_id)
    return None if row is None else _execution(row)


def list_executions(session: Session, pipeline: str | None, limit: int) -> list[Execution]:
    query = select(ExecutionRow).order_by(ExecutionRow.id.desc()).limit(limit)
    if pipeline:
        query = query.where(ExecutionRow.pipeline == pipeline)
    return [_execution(r) for r in session.scalars(query)]


def update_execution(session: Session, execution_id: str, **values: Any) -> None:
    session.execute(update(ExecutionRow).where(ExecutionRow.id == execution_id).values(**values))


def claim(
    session: Session,
    execution_id: str,
    owner: str,
    now: float,
    lease_s: float,
    *,
    steal_from: str | None = None,
) -> bool:
    """Take the execution's lease if it is free, expired, ours, or held by ``steal_from``."""
    free = or_(
        ExecutionRow.lease_owner.is_(None),
        ExecutionRow.lease_expires_at < now,
        ExecutionRow.lease_owner == owner,
    )
    if steal_from is not None:
        free = or_(free, ExecutionRow.lease_owner == steal_from)
    result = session.execute(
        update(ExecutionRow)
        .where(ExecutionRow.id == execution_id, ExecutionRow.status.in_(ACTIVE), free)
        .values(lease_owner=owner, lease_expires_at=now + lease_s)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def renew(session: Session, execution_id: str, owner: str, now: float, lease_s: float) -> bool:
    result = session.execute(
        update(ExecutionRow)
        .where(ExecutionRow.id == execution_id, ExecutionRow.lease_owner == owner)
        .values(lease_expires_at=now + lease_s)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, execution_id: str, owner: str) -> None:
    session.execute(
        update(ExecutionRow)
        .where(ExecutionRow.id == execution_id, ExecutionRow.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )


# ---------------------------------------------------------------- step runs


def step_runs(session: Session, execution_id: str) -> dict[str, StepRun]:
    rows = session.scalars(select(StepRunRow).where(StepRunRow.execution_id == execution_id))
    return {r.step: _step_run(r) for r in rows}


def update_step(session: Session, execution_id: str, step: str, **values: Any) -> None:
    for key in ("cache_components", "handle"):
        if key in values and values[key] is not None:
            values[key] = json.dumps(values[key], sort_keys=True)
    session.execute(
        update(StepRunRow)
        .where(StepRunRow.execution_id == execution_id, StepRunRow.step == step)
        .values(**values)
    )


# ---------------------------------------------------------------- lineage and cache


def record_artifact(
    session: Session,
    *,
    digest: str,
    type_: str,
    execution_id: str,
    step: str,
    inputs: dict[str, str],
    code_digest: str | None,
    at: str,
) -> None:
    if session.get(ArtifactRow, digest) is None:
        session.add(
            ArtifactRow(
                digest=digest,
                type=type_,
                execution_id=execution_id,
                step=step,
                inputs=json.dumps(inputs, sort_keys=True),
                code_digest=code_digest,
                created_at=at,
            )
        )


def get_artifact(session: Session, digest: str) -> dict[str, Any] | None:
    row = session.get(ArtifactRow, digest)
    if row is None:
        return None
    return {
        "digest": row.digest,
        "type": row.type,
        "execution_id": row.execution_id,
        "step": row.step,
        "inputs": json.loads(row.inputs),
        "code_digest": row.code_digest,
        "created_at": row.created_at,
    }


def consumers_of(session: Session, digest: str) -> list[dict[str, Any]]:
    """Artifacts produced from ``digest`` (lineage downstream)."""
    rows = session.scalars(select(ArtifactRow).where(ArtifactRow.inputs.contains(digest)))
    return [
        a for r in rows if (a := get_artifact(session, r.digest)) and digest in a["inputs"].values()
    ]


def get_cache_entry(session: Session, cache_key: str) -> dict[str, Any] | None:
    row = session.get(CacheEntryRow, cache_key)
    if row is None:
        return None
    return {
        "cache_key": row.cache_key,
        "output_type": row.output_type,
        "output_digest": row.output_digest,
        "execution_id": row.execution_id,
        "components": json.loads(row.components),
    }


def latest_cache_entry(
    session: Session, pipeline: str, step: str, before: str | None = None
) -> dict[str, Any] | None:
    """The newest cache entry written by ``pipeline``'s ``step`` (optionally before an execution)."""
    query = select(CacheEntryRow).where(
        CacheEntryRow.pipeline == pipeline, CacheEntryRow.step == step
    )
    if before is not None:
        query = query.where(CacheEntryRow.execution_id < before)
    row = session.scalars(query.order_by(CacheEntryRow.execution_id.desc()).limit(1)).first()
    return None if row is None else get_cache_entry(session, row.cache_key)


def put_cache_entry(
    session: Session,
    *,
    cache_key: str,
    pipeline: str,
    step: str,
    output_type: str,
    output_digest: str | None,
    components: dict[str, Any],
    execution_id: str,
    at: str,
) -> None:
    session.merge(
        CacheEntryRow(
            cache_key=cache_key,
            pipeline=pipeline,
            step=step,
            output_type=output_type,
            output_digest=output_digest,
            components=json.dumps(components, sort_keys=True),
            execution_id=execution_id,
            created_at=at,
        )
    )
