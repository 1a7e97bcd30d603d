"""The event outbox: every state change writes its event in the same transaction.

So an event exists exactly when its change committed: a rolled-back change emits nothing, and
no committed change is missing its event.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lockgate.config.event_types import EVENT_TYPES
from lockgate.ids import isoformat, new_id, utcnow
from lockgate.store.tables import EventRow


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    subject: str
    payload: dict[str, Any]
    created_at: str
    dispatched_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def emit(session: Session, type_: str, subject: str, payload: dict[str, Any]) -> Event:
    """Add an event to ``session``'s transaction (its type and fields from the catalogue)."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"event type {type_!r} is not in the catalogue (config/event_types.py)")
    missing = set(EVENT_TYPES[type_][1]) - set(payload)
    if missing:
        raise ValueError(f"a {type_} event needs the fields {sorted(missing)}")
    row = EventRow(
        id=new_id(),
        type=type_,
        subject=subject,
        payload=json.dumps(payload, sort_keys=True),
        created_at=isoformat(utcnow()),
    )
    session.add(row)
    session.flush()
    return event_from_row(row)


def event_from_row(row: EventRow) -> Event:
    return Event(
        row.id, row.type, row.subject, json.loads(row.payload), row.created_at, row.dispatched_at
    )


def list_events(session: Session, *, type_: str | None = None, limit: int = 50) -> list[Event]:
    query = select(EventRow).order_by(EventRow.id.desc()).limit(limit)
    if type_:
        query = query.where(EventRow.type == type_)
    return [event_from_row(r) for r in reversed(list(session.scalars(query)))]


def get_event(session: Session, event_id: str) -> Event | None:
    row = session.get(EventRow, event_id)
    return None if row is None else event_from_row(row)
