"""Endpoints as stored: the desired state written by the service, the status by the controller."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from lockgate.ids import isoformat, utcnow
from lockgate.store.tables import EndpointRow

CREATING, IN_SERVICE, UPDATING, FAILED, DELETING = (
    "Creating",
    "InService",
    "Updating",
    "Failed",
    "Deleting",
)


@dataclass(frozen=True)
class Endpoint:
    name: str
    model_ref: str
    model_digest: str
    instances: int
    config: dict[str, Any]
    generation: int
    status: str
    reason: str | None
    serving: dict[str, Any] | None
    created_at: str
    created_by: str
    updated_at: str
    updated_by: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _endpoint(row: EndpointRow) -> Endpoint:
    return Endpoint(
        row.name,
        row.model_ref,
        row.model_digest,
        row.instances,
        json.loads(row.config),
        row.generation,
        row.status,
        row.reason,
        None if row.serving is None else json.loads(row.serving),
        row.created_at,
        row.created_by,
        row.updated_at,
        row.updated_by,
    )


def get(session: Session, name: str) -> Endpoint | None:
    row = session.get(EndpointRow, name)
    return None if row is None else _endpoint(row)


def list_all(session: Session) -> list[Endpoint]:
    return [_endpoint(r) for r in session.scalars(select(EndpointRow).order_by(EndpointRow.name))]


def add(
    session: Session,
    name: str,
    model_ref: str,
    model_digest: str,
    instances: int,
    config: dict[str, Any],
    by: str,
) -> Endpoint:
    now = isoformat(utcnow())
    row = EndpointRow(
        name=name,
        model_ref=model_ref,
        model_digest=model_digest,
        instances=instances,
        config=json.dumps(config, sort_keys=True),
        generation=1,
        status=CREATING,
        created_at=now,
        created_by=by,
        updated_at=now,
        updated_by=by,
    )
    session.add(row)
    session.flush()
    return _endpoint(row)


def change(session: Session, name: str, by: str | None = None, **values: Any) -> Endpoint:
    """Set columns of endpoint ``name`` (``config`` and ``serving`` as dicts)."""
    row = session.get(EndpointRow, name, with_for_update=True)
    assert row is not None, name
    for key, value in values.items():
        setattr(
            row, key, json.dumps(value, sort_keys=True) if key in ("config", "serving") else value
        )
    if by is not None:
        row.updated_at = isoformat(utcnow())
        row.updated_by = by
    session.flush()
    return _endpoint(row)


def remove(session: Session, name: str) -> None:
    session.execute(delete(EndpointRow).where(EndpointRow.name == name))
