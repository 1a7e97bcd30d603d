"""Batch jobs and their parts as stored."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from lockgate.store.tables import BatchJobRow, BatchPartRow

PENDING, RUNNING, SUCCEEDED, FAILED = "pending", "running", "succeeded", "failed"


@dataclass(frozen=True)
class BatchJob:
    id: str
    model_ref: str
    model_digest: str
    input_uri: str
    output_uri: str
    format: str
    workers: int
    status: str
    parts: int
    rows: int
    error: str | None
    lease_owner: str | None
    lease_expires_at: float | None
    created_at: str
    created_by: str
    started_at: str | None
    finished_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BatchPart:
    job_id: str
    part: int
    source: str
    first_row: int
    rows: int
    byte_offset: int | None
    status: str
    output: str | None
    seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _job(row: BatchJobRow) -> BatchJob:
    return BatchJob(**{c: getattr(row, c) for c in BatchJob.__dataclass_fields__})


def _part(row: BatchPartRow) -> BatchPart:
    return BatchPart(**{c: getattr(row, c) for c in BatchPart.__dataclass_fields__})


def add_job(session: Session, job: BatchJob, parts: list[tuple[str, int, int, int | None]]) -> None:
    session.add(BatchJobRow(**job.to_dict()))
    for index, (source, first_row, rows, byte_offset) in enumerate(parts):
        session.add(
            BatchPartRow(
                job_id=job.id,
                part=index,
                source=source,
                first_row=first_row,
                rows=rows,
                byte_offset=byte_offset,
                status=PENDING,
            )
        )


def get_job(session: Session, job_id: str) -> BatchJob | None:
    row = session.get(BatchJobRow, job_id)
    return None if row is None else _job(row)


def list_jobs(session: Session, limit: int) -> list[BatchJob]:
    query = select(BatchJobRow).order_by(BatchJobRow.id.desc()).limit(limit)
    return [_job(r) for r in session.scalars(query)]


def parts(session: Session, job_id: str) -> list[BatchPart]:
    query = select(BatchPartRow).where(BatchPartRow.job_id == job_id).order_by(BatchPartRow.part)
    return [_part(r) for r in session.scalars(query)]


def part_done(session: Session, job_id: str, part: int, output: str, seconds: float) -> None:
    session.execute(
        update(BatchPartRow)
        .where(BatchPartRow.job_id == job_id, BatchPartRow.part == part)
        .values(status=SUCCEEDED, output=output, seconds=seconds)
    )


def change_job(session: Session, job_id: str, **values: Any) -> None:
    session.execute(update(BatchJobRow).where(BatchJobRow.id == job_id).values(**values))


def lease(
    session: Session,
    job_id: str,
    owner: str,
    now: float,
    lease_s: float,
    *,
    take_over: bool = False,
) -> bool:
    """Take or renew the job's lease; False when another driver holds it (unless ``take_over``,
    for a holder known to be gone)."""
    row = session.get(BatchJobRow, job_id, with_for_update=True)
    if row is None:
        return False
    held = row.lease_owner not in (None, owner) and (row.lease_expires_at or 0) > now
    if held and not take_over:
        return False
    row.lease_owner, row.lease_expires_at = owner, now + lease_s
    return True


def claimable(session: Session, now: float) -> BatchJob | None:
    """The oldest job waiting for a driver: pending, or running with an expired lease."""
    query = (
        select(BatchJobRow)
        .where(
            or_(
                and_(BatchJobRow.status == PENDING, BatchJobRow.lease_owner.is_(None)),
                and_(
                    BatchJobRow.status.in_((PENDING, RUNNING)),
                    BatchJobRow.lease_expires_at < now,
                ),
            )
        )
        .order_by(BatchJobRow.id)
        .limit(1)
    )
    row = session.scalar(query)
    return None if row is None else _job(row)
