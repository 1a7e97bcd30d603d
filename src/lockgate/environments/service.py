"""Status of the home and its environments (``lockgate status``, ``lockgate env``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from lockgate.auth import audit
from lockgate.auth.policy import authorize
from lockgate.auth.principal import Principal
from lockgate.infra.service import authorize_everywhere, current_lock, state_store
from lockgate.platform import Environment, Platform
from lockgate.store import iam, params
from lockgate.store.migrate import SCHEMA_HEAD


@dataclass(frozen=True)
class EnvironmentSummary:
    name: str
    position: int
    metadata_url: str
    artifact_url: str
    schema: str | None
    artifacts_ok: bool
    keys: dict[str, str]

    @property
    def ready(self) -> bool:
        return (
            self.schema == SCHEMA_HEAD and self.artifacts_ok and set(self.keys.values()) == {"ok"}
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ready": self.ready}


def summarise(env: Environment, position: int) -> EnvironmentSummary:
    schema = env.store.revision() if env.store.exists() else None
    return EnvironmentSummary(
        env.name,
        position,
        env.store.display_url,
        env.artifacts.url,
        schema,
        env.artifacts.exists(),
        env.keys.observe(),
    )


def list_environments(platform: Platform, principal: Principal) -> list[EnvironmentSummary]:
    authorize_everywhere(platform, principal, "env:read", "environments")
    return [summarise(platform.env(n), i + 1) for i, n in enumerate(platform.env_names)]


def show_environment(platform: Platform, principal: Principal, name: str) -> dict[str, Any]:
    """Everything about one environment: stores, keys, network, quotas, roles, bindings, counts."""
    env = platform.env(name)
    summary = summarise(env, platform.env_names.index(name) + 1)
    doc: dict[str, Any] = summary.to_dict()
    doc["buckets"] = {b: env.artifacts.exists(b) for b in env.spec.buckets}
    doc["network"] = env.spec.network.model_dump(mode="json")
    doc["quotas"] = env.spec.quotas.model_dump(mode="json")
    if summary.schema is None:
        return doc
    authorize(env.store, principal, "env:read", env=name, target=name)
    with env.store.transaction() as session:
        doc["roles"] = [asdict(r) for r in iam.list_roles(session)]
        doc["bindings"] = [{"principal": p, "role": r} for p, r in iam.list_bindings(session)]
        doc["parameters"] = len(params.list_parameters(session))
        doc["audit_events"] = audit.count_events(session)
    return doc


def status(platform: Platform, principal: Principal) -> dict[str, Any]:
    """The home, its environments, the state version and the lock."""
    envs = list_environments(platform, principal)
    current = state_store(platform).current()
    lock = current_lock(platform)
    return {
        "home": str(platform.home.root),
        "org": platform.spec.platform.org,
        "principal": principal.name,
        "environments": [e.to_dict() for e in envs],
        "state_version": current.version if current else None,
        "state_outcome": current.outcome if current else None,
        "lock": None if lock is None else lock.to_dict() | {"stale": lock.is_stale()},
    }
