"""The permission matrix: every persona × environment × operation, on a real home with the
recommended bindings, against the table below (the table is the policy, written down)."""

from __future__ import annotations

import pytest

from lockgate.auth.policy import is_allowed
from lockgate.auth.principal import Principal
from lockgate.config.roles import PERMISSIONS
from lockgate.platform import Platform
from lockgate.projects import service
from lockgate.store import iam

READ = {
    "env:read",
    "param:read",
    "audit:read",
    "pipeline:read",
    "model:read",
    "endpoint:read",
    "batch:read",
    "events:read",
    "project:read",
}
DATA_SCIENTIST = READ | {
    "infra:plan",
    "param:write",
    "pipeline:write",
    "pipeline:run",
    "pipeline:promote",
    "model:write",
    "endpoint:write",
    "endpoint:invoke",
    "batch:run",
    "project:write",
}
LEAD = DATA_SCIENTIST | {
    "param:decrypt",
    "audit:verify",
    "model:approve",
    "project:write",
}
ADMIN = set(PERMISSIONS)
CI_BUILD = {
    "env:read",
    "pipeline:read",
    "pipeline:write",
    "pipeline:run",
    "pipeline:promote",
    "model:read",
    "model:write",
    "events:read",
    "project:read",
}
CI_DEPLOY = {
    "env:read",
    "pipeline:read",
    "pipeline:write",
    "pipeline:run",
    "pipeline:promote",
    "model:read",
    "model:approve",
    "endpoint:read",
    "endpoint:write",
    "endpoint:invoke",
    "batch:read",
    "batch:run",
    "events:read",
    "project:read",
}
CI_READ = {"env:read", "pipeline:read", "model:read"}

#: who → environment → what they may do there.
MATRIX: dict[str, dict[str, set[str]]] = {
    "user:dana": {
        "dev": DATA_SCIENTIST,
        "preprod": READ,
        "prod": READ,
    },
    "user:lena": {"dev": LEAD, "preprod": LEAD, "prod": LEAD},
    "ADMIN": {"dev": ADMIN, "preprod": ADMIN, "prod": ADMIN},
    "user:nobody": {"dev": set(), "preprod": set(), "prod": set()},
    # Each CI principal changes its own environment and reads the one before it, nothing else.
    "service:shop-ci-dev": {"dev": CI_BUILD, "preprod": set(), "prod": set()},
    "service:shop-ci-preprod": {"dev": CI_READ, "preprod": CI_DEPLOY, "prod": set()},
    "service:shop-ci-prod": {"dev": set(), "preprod": CI_READ, "prod": CI_DEPLOY},
}


@pytest.fixture
def bound(platform: Platform, admin: Principal) -> Platform:
    for env in ("dev", "preprod", "prod"):
        with platform.env(env).store.transaction() as s:
            iam.add_binding(s, "user:dana", "data-scientist" if env == "dev" else "viewer")
            iam.add_binding(s, "user:lena", "lead-data-scientist")
    service.create(platform, admin, "shop", "build-train-deploy")
    return platform


def test_the_permission_matrix(bound: Platform, admin: Principal) -> None:
    wrong = []
    for who, per_env in MATRIX.items():
        principal = admin if who == "ADMIN" else Principal(who)
        for env, allowed in per_env.items():
            store = bound.env(env).store
            for permission in PERMISSIONS:
                expected = permission in allowed
                if is_allowed(store, principal, permission) != expected:
                    wrong.append(
                        f"{who} {'should' if expected else 'should not'} have {permission} in {env}"
                    )
    assert not wrong, "\n".join(wrong)


def test_the_matrix_names_only_real_permissions() -> None:
    for per_env in MATRIX.values():
        for allowed in per_env.values():
            assert allowed <= set(PERMISSIONS), allowed - set(PERMISSIONS)
