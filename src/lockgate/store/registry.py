"""Model groups and versions as stored."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from lockgate.store.tables import ModelGroupRow, ModelVersionRow


@dataclass(frozen=True)
class ModelVersion:
    group: str
    version: int
    model_digest: str
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    card: dict[str, Any]
    status: str
    status_by: str | None
    status_at: str | None
    status_comment: str | None
    gate_override: str | None
    registered_at: str
    registered_by: str

    @property
    def ref(self) -> str:
        return f"{self.group}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _version(row: ModelVersionRow) -> ModelVersion:
    return ModelVersion(
        row.group_name,
        row.version,
        row.model_digest,
        json.loads(row.metrics),
        json.loads(row.lineage),
        json.loads(row.card),
        row.status,
        row.status_by,
        row.status_at,
        row.status_comment,
        row.gate_override,
        row.registered_at,
        row.registered_by,
    )


def ensure_group(session: Session, name: str, at: str, by: str) -> None:
    if session.get(ModelGroupRow, name) is None:
        session.add(ModelGroupRow(name=name, description="", created_at=at, created_by=by))
        session.flush()


def list_groups(session: Session) -> list[dict[str, Any]]:
    counts = dict(
        session.execute(
            select(ModelVersionRow.group_name, func.count()).group_by(ModelVersionRow.group_name)
        ).all()
    )
    return [
        {
            "name": g.name,
            "versions": int(counts.get(g.name, 0)),
            "created_at": g.created_at,
            "created_by": g.created_by,
        }
        for g in session.scalars(select(ModelGroupRow).order_by(ModelGroupRow.name))
    ]


def add_version(session: Session, **values: Any) -> ModelVersion:
    """Insert the next version of ``values['group_name']`` (numbered 1, 2, 3…)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            select(ModelGroupRow)
            .where(ModelGroupRow.name == values["group_name"])
            .with_for_update()
        )
    latest = session.scalar(
        select(func.max(ModelVersionRow.version)).where(
            ModelVersionRow.group_name == values["group_name"]
        )
    )
    for key in ("metrics", "lineage", "card"):
        values[key] = json.dumps(values.get(key) or {}, sort_keys=True)
    row = ModelVersionRow(version=(latest or 0) + 1, **values)
    session.add(row)
    session.flush()
    return _version(row)


def get_version(session: Session, group: str, version: int) -> ModelVersion | None:
    row = session.get(ModelVersionRow, (group, version))
    return None if row is None else _version(row)


def list_versions(session: Session, group: str) -> list[ModelVersion]:
    rows = session.scalars(
        select(ModelVersionRow)
        .where(ModelVersionRow.group_name == group)
        .order_by(ModelVersionRow.version)
    )
    return [_version(r) for r in rows]


def update_version(session: Session, group: str, version: int, **values: Any) -> None:
    if "card" in values:
        values["card"] = json.dumps(values["card"], sort_keys=True)
    session.execute(
        update(ModelVersionRow)
        .where(ModelVersionRow.group_name == group, ModelVersionRow.version == version)
        .values(**values)
    )
