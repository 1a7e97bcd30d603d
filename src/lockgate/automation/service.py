"""Events, rules and deliveries as the CLI and the API see them, behind the policy check."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from lockgate.auth import audit
from lockgate.auth.policy import authorize
from lockgate.auth.principal import Principal
from lockgate.errors import ConflictError, NotFoundError, ValidationError
from lockgate.platform import Environment, Platform
from lockgate.store import automation as db
from lockgate.store import events
from lockgate.store.automation import STATUSES, AppliedRule, Delivery


@dataclass(frozen=True)
class RuleSummary:
    """An applied rule and how its deliveries stand."""

    environment: str
    rule: AppliedRule
    deliveries: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            **self.rule.to_dict(),
            "deliveries": self.deliveries,
        }


def _environment(platform: Platform, env: str | None) -> Environment:
    return platform.ready(env)


def list_events(
    platform: Platform,
    principal: Principal,
    *,
    type_: str | None = None,
    limit: int = 50,
    env: str | None = None,
) -> list[events.Event]:
    handle = _environment(platform, env)
    authorize(handle.store, principal, "events:read", env=handle.name, target="events")
    with handle.store.read() as session:
        return events.list_events(session, type_=type_, limit=limit)


def list_rules(
    platform: Platform, principal: Principal, *, env: str | None = None
) -> list[RuleSummary]:
    """The rules applied in ``env`` (default: every environment the caller may read)."""
    names = [env] if env else platform.env_names
    out = []
    for name in names:
        handle = _environment(platform, name)
        authorize(handle.store, principal, "events:read", env=handle.name, target="rules")
        with handle.store.read() as session:
            counts = db.delivery_counts(session)
            for rule in db.list_rules(session):
                out.append(RuleSummary(handle.name, rule, counts.get(rule.name, {})))
    return out


def list_deliveries(
    platform: Platform,
    principal: Principal,
    *,
    env: str | None = None,
    event_id: str | None = None,
    rule: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[Delivery]:
    if status is not None and status not in STATUSES:
        raise ValidationError(
            f"unknown delivery status {status!r}.", hint=f"One of: {', '.join(STATUSES)}."
        )
    handle = _environment(platform, env)
    authorize(handle.store, principal, "events:read", env=handle.name, target="deliveries")
    with handle.store.read() as session:
        return db.list_deliveries(session, event_id=event_id, rule=rule, status=status, limit=limit)


def get_delivery(
    platform: Platform, principal: Principal, delivery_id: str, *, env: str | None = None
) -> Delivery:
    handle = _environment(platform, env)
    authorize(handle.store, principal, "events:read", env=handle.name, target=delivery_id)
    with handle.store.read() as session:
        found = db.get_delivery(session, delivery_id)
    if found is None:
        raise _no_delivery(handle, delivery_id)
    return found


def redeliver(
    platform: Platform, principal: Principal, delivery_id: str, *, env: str | None = None
) -> Delivery:
    """Give a failed delivery one more attempt (the worker picks it up at once)."""
    handle = _environment(platform, env)
    authorize(handle.store, principal, "events:write", env=handle.name, target=delivery_id)
    with handle.store.transaction() as session:
        found = db.get_delivery(session, delivery_id)
        if found is None:
            raise _no_delivery(handle, delivery_id)
        if found.status != db.FAILED:
            raise ConflictError(
                f"delivery {delivery_id} is {found.status}; only a failed delivery is redelivered."
            )
        again = db.redeliver(session, delivery_id, time.time())
        assert again is not None
        audit.record(
            session,
            actor=principal.name,
            action="events.redeliver",
            target=delivery_id,
            details={"rule": found.rule, "event": found.event_id},
        )
    return again


def _no_delivery(handle: Environment, delivery_id: str) -> NotFoundError:
    return NotFoundError(
        f"no delivery {delivery_id} in {handle.name}.",
        hint=f"List them: lockgate events deliveries --env {handle.name}",
    )
