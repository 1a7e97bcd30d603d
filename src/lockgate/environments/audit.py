"""Reading and verifying an environment's audit log (``lockgate audit``)."""

from __future__ import annotations

from lockgate.auth import audit
from lockgate.auth.audit import AuditEvent, VerifyResult
from lockgate.auth.policy import authorize
from lockgate.auth.principal import Principal
from lockgate.errors import NotInitialisedError
from lockgate.platform import Platform
from lockgate.store import MetadataStore


def _env_store(platform: Platform, env: str) -> MetadataStore:
    handle = platform.env(env)
    if not handle.store.exists():
        raise NotInitialisedError(
            f"environment {env} has no metadata store yet.", hint="Run `lockgate init`."
        )
    return handle.store


def list_events(
    platform: Platform,
    principal: Principal,
    env: str,
    *,
    limit: int = 50,
    action: str | None = None,
    actor: str | None = None,
) -> list[AuditEvent]:
    store = _env_store(platform, env)
    authorize(store, principal, "audit:read", env=env, target="audit")
    with store.transaction() as session:
        return audit.list_events(session, limit=limit, action=action, actor=actor)


def verify(platform: Platform, principal: Principal, env: str) -> VerifyResult:
    store = _env_store(platform, env)
    authorize(store, principal, "audit:verify", env=env, target="audit")
    with store.transaction() as session:
        return audit.verify(session)
