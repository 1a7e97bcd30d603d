"""The permission catalogue and the default roles of the personas.

A permission is ``area:action``. A role grants a list of permissions, where ``area:*`` and ``*``
are wildcards. Later capabilities add their permissions here, so a role in ``platform.toml`` can
only name what Lockgate actually enforces.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

PERMISSIONS: dict[str, str] = {
    "env:read": "see environments, their stores, network policy and quotas",
    "infra:plan": "compute the infrastructure plan",
    "infra:apply": "apply the infrastructure plan",
    "infra:destroy": "destroy what apply created",
    "infra:unlock": "break a stale infrastructure lock",
    "param:read": "list parameters and read plain values",
    "param:write": "put and delete parameters",
    "param:decrypt": "read the clear value of secure parameters",
    "audit:read": "list audit events",
    "audit:verify": "verify the audit chain",
    "pipeline:read": "list and show pipelines, executions, logs and lineage",
    "pipeline:write": "upsert pipeline definitions",
    "pipeline:run": "run, retry, stop and resume executions",
    "pipeline:promote": "promote a pipeline version into this environment",
    "model:read": "list and show model groups, versions and cards",
    "model:write": "register model versions and edit their cards",
    "model:approve": "approve or reject model versions",
    "endpoint:read": "list and show endpoints and their logs",
    "endpoint:write": "create, update and delete endpoints",
    "endpoint:invoke": "send requests to endpoints",
    "batch:read": "list and show batch inference jobs",
    "batch:run": "start and resume batch inference jobs",
    "events:read": "list the event outbox, automation rules and their deliveries",
    "events:write": "redeliver a failed delivery of an event to a rule",
    "auth:tokens": "create, list and revoke other principals' API tokens (your own need no permission)",
    "project:read": "list and show projects and their CI runs",
    "project:write": "create, update and delete projects (checked in their first environment; "
    "the platform provisions the later ones, as a launch role would)",
}

DEFAULT_ROLES: dict[str, tuple[str, list[str]]] = {
    "platform-admin": ("Manages the platform: infrastructure, parameters, audit.", ["*"]),
    "lead-data-scientist": (
        "A data scientist who may also approve models, read secure parameters and verify the audit log.",
        [
            "env:read",
            "infra:plan",
            "param:*",
            "audit:*",
            "pipeline:*",
            "model:*",
            "endpoint:*",
            "batch:*",
            "events:read",
            "project:*",
        ],
    ),
    "data-scientist": (
        "Builds and trains models; bind it in dev, and 'viewer' in preprod and prod.",
        [
            "env:read",
            "infra:plan",
            "param:read",
            "param:write",
            "audit:read",
            "pipeline:*",
            "model:read",
            "model:write",
            "endpoint:*",
            "batch:*",
            "events:read",
            "project:*",
        ],
    ),
    "viewer": (
        "Read-only access.",
        [
            "env:read",
            "param:read",
            "audit:read",
            "pipeline:read",
            "model:read",
            "endpoint:read",
            "batch:read",
            "events:read",
            "project:read",
        ],
    ),
    "ci": (
        "A CI service principal for outside CI (each project also gets its own, scoped to it).",
        [
            "env:read",
            "param:read",
            "pipeline:read",
            "pipeline:run",
            "model:read",
            "endpoint:read",
            "endpoint:write",
            "endpoint:invoke",
            "batch:read",
            "batch:run",
        ],
    ),
}


def grants(pattern: str, permission: str) -> bool:
    """Whether one granted ``pattern`` (maybe a wildcard) covers ``permission``."""
    return fnmatchcase(permission, pattern)


def is_known_pattern(pattern: str) -> bool:
    """Whether ``pattern`` names, or matches, at least one permission of the catalogue."""
    return any(grants(pattern, p) for p in PERMISSIONS)
