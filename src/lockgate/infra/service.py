"""The infrastructure service: plan, apply, destroy, show, history and unlock.

Every operation acts as a principal and passes the policy check in each environment whose store
exists. ``apply`` holds the lock from planning to the last state write, records a new state
version even when it is interrupted, and writes one audit event per change in the environment
the change touched.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lockgate.auth import audit
from lockgate.auth.policy import authorize
from lockgate.auth.principal import Principal
from lockgate.errors import AbortedError, ConflictError
from lockgate.ids import isoformat, utcnow
from lockgate.infra.lock import LockInfo, StateLock
from lockgate.infra.plan import Change, Plan, compute_plan
from lockgate.infra.resources import Resource, desired_resources, handlers
from lockgate.infra.state import StateStore, StateVersion
from lockgate.platform import Platform

#: Fault injection for the kill-during-apply tests: seconds to pause after each change.
_SLOW_APPLY_ENV = "LOCKGATE_TEST_APPLY_DELAY_S"


@dataclass(frozen=True)
class ApplyResult:
    plan: Plan
    applied: list[Change]
    state: StateVersion | None


def state_store(platform: Platform) -> StateStore:
    return StateStore(platform.home.state_dir)


def state_lock(platform: Platform) -> StateLock:
    return StateLock(platform.home.state_dir)


def authorize_everywhere(
    platform: Platform, principal: Principal, permission: str, target: str
) -> None:
    """The policy check in every environment that exists (a platform-wide operation)."""
    for name in platform.env_names:
        env = platform.env(name)
        if env.store.exists():
            authorize(env.store, principal, permission, env=name, target=target)


def _desired(platform: Platform) -> list[Resource]:
    root = str(platform.home.root)
    return [
        r
        for name in platform.env_names
        for r in desired_resources(platform.spec, platform.env(name), root)
    ]


def _plan(
    platform: Platform, *, kinds: frozenset[str] | None = None, destroy: bool = False
) -> Plan:
    return compute_plan(
        platform, _desired(platform), state_store(platform).current(), kinds=kinds, destroy=destroy
    )


def plan(platform: Platform, principal: Principal, *, destroy: bool = False) -> Plan:
    """What ``apply`` (or ``destroy``) would change now."""
    authorize_everywhere(platform, principal, "infra:plan", "platform")
    return _plan(platform, destroy=destroy)


def apply(
    platform: Platform,
    principal: Principal,
    *,
    confirm: Callable[[Plan], bool],
    on_change: Callable[[Change], None] = lambda change: None,
    destroy: bool = False,
    force: bool = False,
    kinds: frozenset[str] | None = None,
    operation: str | None = None,
) -> ApplyResult:
    """Plan under the lock, ask ``confirm``, apply each change in order, record the state."""
    operation = operation or ("destroy" if destroy else "apply")
    permission = "infra:destroy" if destroy else "infra:apply"
    with state_lock(platform).hold(principal.name, operation):
        authorize_everywhere(platform, principal, permission, "platform")
        the_plan = _plan(platform, kinds=kinds, destroy=destroy)
        _preflight(platform, the_plan, force)
        if the_plan.has_changes and not confirm(the_plan):
            raise AbortedError(f"{operation} cancelled; nothing was changed.")
        applied: list[Change] = []
        outcome = "interrupted"
        try:
            for change in the_plan.changes:
                _apply_change(platform, principal, change, force)
                applied.append(change)
                on_change(change)
                _injected_delay()
            outcome = "complete"
        except Exception:
            outcome = "failed"
            raise
        finally:
            state = _record_state(platform, principal, the_plan, applied, operation, outcome)
    return ApplyResult(the_plan, applied, state)


def _injected_delay() -> None:
    delay = os.environ.get(_SLOW_APPLY_ENV)
    if delay:
        time.sleep(float(delay))


def _preflight(platform: Platform, the_plan: Plan, force: bool) -> None:
    """Refuse, before anything changes, a plan that would delete files without ``force``."""
    if force:
        return
    for change in the_plan.changes:
        if change.action == "delete" and change.resource.kind == "bucket":
            env = platform.env(change.resource.env)
            files = env.artifacts.files_in(change.resource.name or "")
            if files:
                raise ConflictError(
                    f"{change.address} holds {len(files)} file(s) (e.g. {files[0]}) that may be "
                    "models; nothing was changed.",
                    hint="Move what you need elsewhere, or pass --force to delete them too.",
                )


def _apply_change(platform: Platform, principal: Principal, change: Change, force: bool) -> None:
    env = platform.env(change.resource.env)
    handler = handlers()[change.resource.kind]
    res = change.resource
    details = {
        "kind": res.kind,
        "drift": change.drift,
        "attributes": [k for k, _, _ in change.diff()],
    }

    def do(session: Any) -> None:
        if change.action == "delete":
            handler.delete(env, res.name, session, force)
        else:
            handler.put(env, res, session, principal.name)

    try:
        if handler.in_store:
            with env.store.transaction() as session:
                do(session)
                audit.record(
                    session,
                    actor=principal.name,
                    action=f"infra.{change.action}",
                    target=change.address,
                    details=details,
                )
            return
        do(None)
    except Exception as exc:
        if env.store.exists():
            with env.store.transaction() as session:
                audit.record(
                    session,
                    actor=principal.name,
                    action=f"infra.{change.action}",
                    target=change.address,
                    outcome="failed",
                    details=details | {"error": type(exc).__name__},
                )
        raise
    with env.store.transaction() as session:
        audit.record(
            session,
            actor=principal.name,
            action=f"infra.{change.action}",
            target=change.address,
            details=details,
        )


def _record_state(
    platform: Platform,
    principal: Principal,
    the_plan: Plan,
    applied: list[Change],
    operation: str,
    outcome: str,
) -> StateVersion | None:
    base = the_plan.base
    resources: dict[str, dict[str, Any]] = dict(base.resources) if base else {}
    changed = {c.address for c in the_plan.changes}
    # Resources that needed no change are recorded as managed; stale records are forgotten.
    for addr, res in the_plan.resources.items():
        if addr not in changed:
            resources[addr] = _record(res)
    for addr in the_plan.forget:
        resources.pop(addr, None)
    for change in applied:
        if change.action == "delete":
            resources.pop(change.address, None)
        else:
            resources[change.address] = _record(change.resource)
    if base is not None and not applied and resources == base.resources:
        return None
    store = state_store(platform)
    state = StateVersion(
        version=(base.version if base else 0) + 1,
        created_at=isoformat(utcnow()),
        created_by=principal.name,
        operation=operation,
        outcome=outcome,
        changes=[{"action": c.action, "address": c.address} for c in applied],
        resources=dict(sorted(resources.items())),
    )
    store.write(state)
    return state


def _record(res: Resource) -> dict[str, Any]:
    attrs = {k: v for k, v in res.attrs.items() if k != "value_env"}
    return {"env": res.env, "kind": res.kind, "name": res.name, "attrs": attrs}


def show(platform: Platform, principal: Principal) -> StateVersion | None:
    """The current state version (None before the first apply)."""
    authorize_everywhere(platform, principal, "env:read", "platform")
    return state_store(platform).current()


def history(platform: Platform, principal: Principal) -> list[StateVersion]:
    authorize_everywhere(platform, principal, "env:read", "platform")
    return state_store(platform).history()


def current_lock(platform: Platform) -> LockInfo | None:
    return state_lock(platform).current()


def unlock(platform: Platform, principal: Principal, lock_id: str) -> LockInfo:
    """Break the stale lock ``lock_id``; audited in every environment."""
    authorize_everywhere(platform, principal, "infra:unlock", "platform")
    broken = state_lock(platform).break_stale(lock_id)
    for name in platform.env_names:
        env = platform.env(name)
        if env.store.exists():
            with env.store.transaction() as session:
                audit.record(
                    session,
                    actor=principal.name,
                    action="infra.unlock",
                    target=f"lock {broken.id}",
                    details={
                        "holder": broken.holder,
                        "operation": broken.operation,
                        "since": broken.since,
                        "pid": broken.pid,
                    },
                )
    return broken
