"""The one policy check every service operation passes.

Permissions come from the roles and bindings *applied* to the environment's metadata store (what
``infra apply`` last made true), not from an edited but unapplied ``platform.toml``. A refusal is
written to the audit log before it is raised.
"""

from __future__ import annotations

from lockgate.auth import audit
from lockgate.auth.principal import Principal
from lockgate.config.roles import grants
from lockgate.errors import PermissionDeniedError
from lockgate.store import MetadataStore
from lockgate.store.iam import list_roles, roles_of


def is_allowed(store: MetadataStore, principal: Principal, permission: str) -> bool:
    with store.transaction() as session:
        roles = roles_of(session, principal.name)
    return any(grants(p, permission) for role in roles for p in role.permissions)


def authorize(
    store: MetadataStore, principal: Principal, permission: str, *, env: str, target: str
) -> None:
    """Return when ``principal`` holds ``permission`` in ``env``; else audit and refuse."""
    if is_allowed(store, principal, permission):
        return
    with store.transaction() as session:
        able = [
            r.name for r in list_roles(session) if any(grants(p, permission) for p in r.permissions)
        ]
        audit.record(
            session,
            actor=principal.name,
            action=permission,
            target=target,
            outcome="denied",
            details={"environment": env},
        )
    needed = " or ".join(able) or "a role granting it"
    raise PermissionDeniedError(
        f"{principal} may not {permission} in {env}: that needs the role {needed}.",
        hint=f"Ask a platform admin to bind {principal} to {needed} in {env} "
        "([[bindings]] in platform.toml, then `lockgate infra apply`).",
    )
