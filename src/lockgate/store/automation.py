"""Applied automation rules and the deliveries of events to them.

A delivery is one event handed to one rule. Its life::

    pending ──claim──▶ running ──ok──▶ succeeded
       ▲                  │ └──gave up──▶ failed ──redeliver──▶ pending
       └──retry (backoff)─┘
    running whose claim expired (the worker died) ──claim──▶ running again

Every claim is a lease (``claimed_by`` until ``claim_expires_at``) and every finish is fenced
on it, so a worker that lost its claim cannot overwrite the outcome of the one that took over.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from lockgate.ids import isoformat, new_id, utcnow
from lockgate.store.events import Event, event_from_row
from lockgate.store.tables import DeliveryRow, EventRow, RuleRow

PENDING, RUNNING, SUCCEEDED, FAILED = "pending", "running", "succeeded", "failed"
STATUSES = (PENDING, RUNNING, SUCCEEDED, FAILED)
#: Attempts kept in a delivery's history (the newest).
HISTORY_LIMIT = 20
#: The longest wait between two attempts.
MAX_BACKOFF_S = 3600.0


@dataclass(frozen=True)
class AppliedRule:
    name: str
    spec: dict[str, Any]
    applied_at: str
    applied_by: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Delivery:
    id: str
    event_id: str
    rule: str
    rule_spec: dict[str, Any]
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: float
    claimed_by: str | None
    claim_expires_at: float | None
    last_error: str | None
    result: dict[str, Any] | None
    history: list[dict[str, Any]]
    created_at: str
    finished_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Outcome:
    """What one attempt of an action came to."""

    ok: bool
    result: dict[str, Any]
    error: str | None = None
    #: Whether a failure may succeed on a later attempt (a timeout, a 503), or never will.
    retryable: bool = True


# --- rules -------------------------------------------------------------------------------------


def get_rule(session: Session, name: str) -> AppliedRule | None:
    row = session.get(RuleRow, name)
    return None if row is None else _rule(row)


def list_rules(session: Session) -> list[AppliedRule]:
    return [_rule(r) for r in session.scalars(select(RuleRow).order_by(RuleRow.name))]


def put_rule(session: Session, name: str, spec: dict[str, Any], actor: str) -> None:
    session.merge(
        RuleRow(
            name=name,
            spec=json.dumps(spec, sort_keys=True),
            applied_at=isoformat(utcnow()),
            applied_by=actor,
        )
    )


def delete_rule(session: Session, name: str) -> None:
    session.execute(delete(RuleRow).where(RuleRow.name == name))


def _rule(row: RuleRow) -> AppliedRule:
    return AppliedRule(row.name, json.loads(row.spec), row.applied_at, row.applied_by)


# --- dispatch ----------------------------------------------------------------------------------


def undispatched(session: Session, limit: int) -> list[Event]:
    """The oldest events not yet matched against the rules, locked for this transaction.

    On PostgreSQL concurrent workers skip each other's rows; SQLite serialises writers anyway.
    """
    query = (
        select(EventRow)
        .where(EventRow.dispatched_at.is_(None))
        .order_by(EventRow.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [event_from_row(r) for r in session.scalars(query)]


def has_undispatched(session: Session) -> bool:
    query = select(EventRow.id).where(EventRow.dispatched_at.is_(None)).limit(1)
    return session.scalar(query) is not None


def add_delivery(
    session: Session, event_id: str, rule: str, rule_spec: dict[str, Any], now: float
) -> None:
    session.add(
        DeliveryRow(
            id=new_id(),
            event_id=event_id,
            rule=rule,
            rule_spec=json.dumps(rule_spec, sort_keys=True),
            status=PENDING,
            attempts=0,
            max_attempts=int(rule_spec.get("max_attempts", 1)),
            next_attempt_at=now,
            history="[]",
            created_at=isoformat(utcnow()),
        )
    )


def mark_dispatched(session: Session, event_ids: list[str]) -> None:
    if event_ids:
        session.execute(
            update(EventRow)
            .where(EventRow.id.in_(event_ids))
            .values(dispatched_at=isoformat(utcnow()))
        )


# --- claim and finish --------------------------------------------------------------------------


def _due(now: float) -> Any:
    return or_(
        and_(DeliveryRow.status == PENDING, DeliveryRow.next_attempt_at <= now),
        and_(DeliveryRow.status == RUNNING, DeliveryRow.claim_expires_at < now),
    )


def has_due(session: Session, now: float) -> bool:
    return session.scalar(select(DeliveryRow.id).where(_due(now)).limit(1)) is not None


def claim(
    session: Session, worker: str, now: float, lease_s: Callable[[dict[str, Any]], float]
) -> Delivery | None:
    """Claim the most overdue delivery for ``worker``, or None when nothing is due.

    ``lease_s`` gives, for a rule's action, how long one attempt may take; the claim lasts that
    long. A running delivery whose claim expired lost its worker: that attempt
    is recorded as abandoned and the delivery is tried again (or fails, out of attempts).
    """
    while True:
        query = (
            select(DeliveryRow)
            .where(_due(now))
            .order_by(DeliveryRow.next_attempt_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        row = session.scalar(query)
        if row is None:
            return None
        history = json.loads(row.history)
        if row.status == RUNNING:
            error = f"the worker {row.claimed_by} stopped before finishing attempt {row.attempts}"
            history.append(_attempt(row.attempts, row.claimed_by, "abandoned", error))
            row.last_error = error
            if row.attempts >= row.max_attempts:
                _close(row, FAILED, history)
                continue
        row.status = RUNNING
        row.attempts += 1
        row.claimed_by = worker
        row.claim_expires_at = now + lease_s(json.loads(row.rule_spec)["action"])
        row.history = json.dumps(history[-HISTORY_LIMIT:])
        session.flush()
        return _delivery(row)


def finish(
    session: Session, delivery: Delivery, worker: str, outcome: Outcome, now: float
) -> Delivery | None:
    """Record the outcome of ``worker``'s attempt; None if the claim was lost meanwhile."""
    row = session.get(DeliveryRow, delivery.id, with_for_update=True)
    if (
        row is None
        or row.status != RUNNING
        or row.claimed_by != worker
        or row.attempts != delivery.attempts
    ):
        return None
    history = json.loads(row.history)
    label = "succeeded" if outcome.ok else "failed"
    history.append(_attempt(row.attempts, worker, label, outcome.error, outcome.result))
    row.result = json.dumps(outcome.result, sort_keys=True)
    if outcome.ok:
        row.last_error = None
        _close(row, SUCCEEDED, history)
    elif outcome.retryable and row.attempts < row.max_attempts:
        backoff = float(json.loads(row.rule_spec).get("backoff_s", 1.0))
        row.last_error = outcome.error
        row.status = PENDING
        row.next_attempt_at = now + min(backoff * 2 ** (row.attempts - 1), MAX_BACKOFF_S)
        row.claimed_by = row.claim_expires_at = None
        row.history = json.dumps(history[-HISTORY_LIMIT:])
    else:
        row.last_error = outcome.error
        _close(row, FAILED, history)
    session.flush()
    return _delivery(row)


def redeliver(session: Session, delivery_id: str, now: float) -> Delivery | None:
    """Give a failed delivery one more attempt, due now."""
    row = session.get(DeliveryRow, delivery_id, with_for_update=True)
    if row is None:
        return None
    row.status = PENDING
    row.max_attempts = row.attempts + 1
    row.next_attempt_at = now
    row.finished_at = None
    session.flush()
    return _delivery(row)


def _close(row: DeliveryRow, status: str, history: list[dict[str, Any]]) -> None:
    row.status = status
    row.claimed_by = row.claim_expires_at = None
    row.finished_at = isoformat(utcnow())
    row.history = json.dumps(history[-HISTORY_LIMIT:])


def _attempt(
    number: int,
    worker: str | None,
    outcome: str,
    error: str | None,
    result: dict[str, Any] | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "attempt": number,
        "at": isoformat(utcnow()),
        "worker": worker,
        "outcome": outcome,
    }
    if error:
        entry["error"] = error
    if result:
        entry["result"] = result
    return entry


# --- reading -----------------------------------------------------------------------------------


def get_delivery(session: Session, delivery_id: str) -> Delivery | None:
    row = session.get(DeliveryRow, delivery_id)
    return None if row is None else _delivery(row)


def list_deliveries(
    session: Session,
    *,
    event_id: str | None = None,
    rule: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[Delivery]:
    query = select(DeliveryRow).order_by(DeliveryRow.id.desc()).limit(limit)
    if event_id:
        query = query.where(DeliveryRow.event_id == event_id)
    if rule:
        query = query.where(DeliveryRow.rule == rule)
    if status:
        query = query.where(DeliveryRow.status == status)
    return [_delivery(r) for r in reversed(list(session.scalars(query)))]


def delivery_counts(session: Session) -> dict[str, dict[str, int]]:
    """rule → status → how many deliveries."""
    query = select(DeliveryRow.rule, DeliveryRow.status, func.count()).group_by(
        DeliveryRow.rule, DeliveryRow.status
    )
    out: dict[str, dict[str, int]] = {}
    for rule, status, count in session.execute(query):
        out.setdefault(rule, {})[status] = count
    return out


def _delivery(row: DeliveryRow) -> Delivery:
    return Delivery(
        id=row.id,
        event_id=row.event_id,
        rule=row.rule,
        rule_spec=json.loads(row.rule_spec),
        status=row.status,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        next_attempt_at=row.next_attempt_at,
        claimed_by=row.claimed_by,
        claim_expires_at=row.claim_expires_at,
        last_error=row.last_error,
        result=None if row.result is None else json.loads(row.result),
        history=json.loads(row.history),
        created_at=row.created_at,
        finished_at=row.finished_at,
    )
