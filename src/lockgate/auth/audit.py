"""The hash-chained, append-only audit log of an environment.

Each event's ``hash`` is the SHA-256 of the previous event's hash and the event's own fields, so
changing, removing or reordering an event breaks every hash after it; :func:`verify` finds the
first broken link. Events are written in the same transaction as the change they describe.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from lockgate.ids import isoformat, new_id, utcnow
from lockgate.store.tables import AuditEventRow

GENESIS = "0" * 64
_SECRET_KEYS = frozenset({"value", "clear", "password", "secret", "token", "plaintext"})

if TYPE_CHECKING:
    from lockgate.store import MetadataStore


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    id: str
    at: str
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    events: int
    broken_at: int | None = None
    reason: str | None = None


def _digest(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps([prev_hash, fields], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _fields(row: AuditEventRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "id": row.id,
        "at": row.at,
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "details": row.details,
    }


def _event(row: AuditEventRow) -> AuditEvent:
    fields = _fields(row) | {"details": json.loads(row.details)}
    return AuditEvent(**fields, prev_hash=row.prev_hash, hash=row.hash)


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event in ``session``'s transaction. ``details`` must never hold a secret."""
    details = details or {}
    leaked = _SECRET_KEYS.intersection(details)
    if leaked:
        raise ValueError(f"audit details must not carry secret fields: {sorted(leaked)}")
    if session.get_bind().dialect.name == "postgresql":
        # Serialise appenders; SQLite's BEGIN IMMEDIATE already does.
        session.execute(text("SELECT pg_advisory_xact_lock(7460001)"))
    last = session.execute(
        select(AuditEventRow.seq, AuditEventRow.hash).order_by(AuditEventRow.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS)
    row = AuditEventRow(
        seq=seq,
        id=new_id(),
        at=isoformat(utcnow()),
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        details=json.dumps(details, sort_keys=True),
        prev_hash=prev_hash,
    )
    row.hash = _digest(prev_hash, _fields(row))
    session.add(row)
    session.flush()
    return _event(row)


def record_refusal(
    store: MetadataStore, *, actor: str, action: str, target: str, reason: str
) -> None:
    """Audit a refused operation in its own transaction (the operation itself changed nothing)."""
    with store.transaction() as session:
        record(
            session,
            actor=actor,
            action=action,
            target=target,
            outcome="denied",
            details={"reason": reason},
        )


def list_events(
    session: Session, *, limit: int = 50, action: str | None = None, actor: str | None = None
) -> list[AuditEvent]:
    """The newest ``limit`` events (optionally one action or actor), oldest first."""
    query = select(AuditEventRow).order_by(AuditEventRow.seq.desc()).limit(limit)
    if action:
        query = query.where(AuditEventRow.action == action)
    if actor:
        query = query.where(AuditEventRow.actor == actor)
    return [_event(row) for row in reversed(list(session.scalars(query)))]


def count_events(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(AuditEventRow)) or 0)


def verify(session: Session) -> VerifyResult:
    """Walk the whole chain and report the first event whose link or hash does not hold."""
    prev_hash, expected_seq, count = GENESIS, 1, 0
    for row in session.scalars(select(AuditEventRow).order_by(AuditEventRow.seq)):
        if row.seq != expected_seq:
            return VerifyResult(False, count, expected_seq, f"event {expected_seq} is missing")
        if row.prev_hash != prev_hash:
            return VerifyResult(
                False, count, row.seq, f"event {row.seq} does not link to event {row.seq - 1}"
            )
        if _digest(prev_hash, _fields(row)) != row.hash:
            return VerifyResult(
                False, count, row.seq, f"event {row.seq} was altered after it was written"
            )
        prev_hash, expected_seq, count = row.hash, expected_seq + 1, count + 1
    return VerifyResult(True, count)
