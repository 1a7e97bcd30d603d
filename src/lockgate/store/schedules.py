"""Pipeline schedules as stored."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from lockgate.store.tables import ScheduleRow


@dataclass(frozen=True)
class Schedule:
    name: str
    pipeline: str
    cron: str
    parameters: dict[str, str]
    paused: bool
    last_slot: str | None
    last_execution: str | None
    created_at: str
    created_by: str
    #: A scheduled batch job ({"group", "input", "output"}) instead of a pipeline run.
    batch: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _schedule(row: ScheduleRow) -> Schedule:
    return Schedule(
        row.name,
        row.pipeline,
        row.cron,
        json.loads(row.parameters),
        row.paused,
        row.last_slot,
        row.last_execution,
        row.created_at,
        row.created_by,
        json.loads(row.batch) if row.batch else None,
    )


def add(session: Session, schedule: Schedule) -> None:
    values = schedule.to_dict()
    values["parameters"] = json.dumps(schedule.parameters, sort_keys=True)
    values["batch"] = json.dumps(schedule.batch, sort_keys=True) if schedule.batch else None
    session.add(ScheduleRow(**values))


def get(session: Session, name: str) -> Schedule | None:
    row = session.get(ScheduleRow, name)
    return None if row is None else _schedule(row)


def list_all(session: Session) -> list[Schedule]:
    return [_schedule(r) for r in session.scalars(select(ScheduleRow).order_by(ScheduleRow.name))]


def change(session: Session, name: str, **values: Any) -> None:
    session.execute(update(ScheduleRow).where(ScheduleRow.name == name).values(**values))


def remove(session: Session, name: str) -> None:
    session.execute(delete(ScheduleRow).where(ScheduleRow.name == name))
