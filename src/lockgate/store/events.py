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

from lockgate.ids import isoformat, new_id, utcnow
from lockgate.store.tables import EventRow


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    subject: str
    payload: dict[str, Any]
    created_at: str
    delivered_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def emit(session: Session, type_: str, subject: str, payload: dict[str, Any]) -> Event:
    """Add an event to ``session``'s transaction."""
    row = EventRow(
        id=new_id(),
        type=type_,
        subject=subject,
        payload=json.dumps(payload, sort_keys=True),
        created_at=isoformat(utcnow()),
    )
    session.add(row)
    session.flush()
    return _event(row)


def _event(row: EventRow) -> Event:
    return Event(
        row.id, row.type, row.subject, json.loads(row.payload), row.created_at, row.delivered_at
    )


def list_events(session: Session, *, type_: str | None = None, limit: int = 50) -> list[Event]:
    query = select(EventRow).order_by(EventRow.id.desc()).limit(limit)
    if type_:
        query = query.where(EventRow.type == type_)
    return [_event(r) for r in reversed(list(session.scalars(query)))]
