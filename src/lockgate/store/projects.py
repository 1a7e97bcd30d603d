"""Projects and CI runs as stored in an environment's metadata store."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from lockgate.store.tables import CiRunRow, ProjectRow

_JSON_FIELDS = ("options", "environments", "required_approvers", "resources")


@dataclass(frozen=True)
class Project:
    name: str
    template: str
    template_version: str
    repo: str
    options: dict[str, Any]
    environments: list[str]
    required_approvers: list[str]
    ci_principal: str
    resources: list[str]
    created_at: str
    created_by: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _project(row: ProjectRow) -> Project:
    values = {c: getattr(row, c) for c in Project.__dataclass_fields__}
    for name in _JSON_FIELDS:
        values[name] = json.loads(values[name])
    return Project(**values)


def put_project(session: Session, project: Project) -> None:
    values = project.to_dict()
    for name in _JSON_FIELDS:
        values[name] = json.dumps(values[name], sort_keys=True)
    session.merge(ProjectRow(**values))


def get_project(session: Session, name: str) -> Project | None:
    row = session.get(ProjectRow, name)
    return None if row is None else _project(row)


def list_projects(session: Session) -> list[Project]:
    return [_project(r) for r in session.scalars(select(ProjectRow).order_by(ProjectRow.name))]


def delete_project(session: Session, name: str) -> None:
    session.execute(delete(ProjectRow).where(ProjectRow.name == name))


# --- CI runs -----------------------------------------------------------------------------------

#: queued → running → succeeded | failed; waiting (for an approver) → queued; cancelled.
ACTIVE = ("waiting", "queued", "running")
#: The trigger of a run a user started with `lockgate ci KIND` in a checkout.
BY_HAND = "by hand"


@dataclass(frozen=True)
class CiRun:
    id: str
    project: str
    kind: str
    status: str
    commit: str | None
    trigger: str
    approvers: list[str]
    run_as: str
    created_at: str
    created_by: str
    attempts: int = 0
    approved_by: str | None = None
    approved_at: str | None = None
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    idempotency_key: str | None = None
    inputs: dict[str, str] | None = None
    log: str | None = field(default=None, repr=False)

    def to_dict(self, *, with_log: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_log:
            out.pop("log")
        return out


def _run(row: CiRunRow) -> CiRun:
    values = {c: getattr(row, c) for c in CiRun.__dataclass_fields__}
    values["approvers"] = json.loads(values["approvers"])
    values["inputs"] = json.loads(values["inputs"]) if values["inputs"] else None
    return CiRun(**values)


def add_run(session: Session, run: CiRun) -> None:
    values = run.to_dict(with_log=True)
    values["approvers"] = json.dumps(run.approvers)
    values["inputs"] = json.dumps(run.inputs, sort_keys=True) if run.inputs else None
    session.add(CiRunRow(**values))
    session.flush()


def get_run(session: Session, run_id: str) -> CiRun | None:
    row = session.get(CiRunRow, run_id)
    return None if row is None else _run(row)


def run_by_key(session: Session, key: str) -> CiRun | None:
    row = session.scalars(select(CiRunRow).where(CiRunRow.idempotency_key == key)).first()
    return None if row is None else _run(row)


def list_runs(session: Session, project: str | None = None, limit: int = 50) -> list[CiRun]:
    query = select(CiRunRow).order_by(CiRunRow.id.desc()).limit(limit)
    if project:
        query = query.where(CiRunRow.project == project)
    return [_run(r) for r in session.scalars(query)]


def change_run(session: Session, run_id: str, **values: Any) -> None:
    session.execute(update(CiRunRow).where(CiRunRow.id == run_id).values(**values))


def claim_run(session: Session, owner: str, lease_s: float) -> CiRun | None:
    """The oldest queued run (or a running one whose lease expired), now leased to ``owner``."""
    now = time.time()
    row = session.scalars(
        select(CiRunRow)
        .where(
            or_(
                CiRunRow.status == "queued",
                # A run started by hand is the CLI's own: never taken over.
                (CiRunRow.status == "running")
                & (CiRunRow.lease_expires_at < now)
                & (CiRunRow.trigger != BY_HAND),
            )
        )
        .order_by(CiRunRow.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if row is None:
        return None
    row.status = "running"
    row.lease_owner = owner
    row.lease_expires_at = now + lease_s
    row.attempts += 1
    session.flush()
    return _run(row)


def fail_abandoned(session: Session, finished_at: str) -> int:
    """Runs started by hand whose command stopped (its lease ran out): failed, with the reason."""
    result = session.execute(
        update(CiRunRow)
        .where(
            CiRunRow.status == "running",
            CiRunRow.trigger == BY_HAND,
            CiRunRow.lease_expires_at < time.time(),
        )
        .values(
            status="failed",
            error="the command that ran it by hand stopped before it finished",
            finished_at=finished_at,
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def renew_run(session: Session, run_id: str, owner: str, lease_s: float) -> bool:
    result = session.execute(
        update(CiRunRow)
        .where(CiRunRow.id == run_id, CiRunRow.lease_owner == owner, CiRunRow.status == "running")
        .values(lease_expires_at=time.time() + lease_s)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish_run(session: Session, run_id: str, owner: str | None, **values: Any) -> bool:
    """Record the outcome, fenced on the claim (a run re-claimed after its lease expired is
    no longer this owner's to finish)."""
    query = update(CiRunRow).where(CiRunRow.id == run_id)
    if owner is not None:
        query = query.where(CiRunRow.lease_owner == owner)
    result = session.execute(query.values(lease_owner=None, lease_expires_at=None, **values))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def delete_runs(session: Session, project: str) -> None:
    session.execute(delete(CiRunRow).where(CiRunRow.project == project))
