"""Plans: the difference between what ``platform.toml`` declares and what exists.

Each resource is observed as it really is, so changes made behind Lockgate's back (a folder
deleted by hand, a parameter edited in the database) show up as *drift* and ``apply`` repairs
them. The recorded state says what Lockgate manages, so a resource removed from
``platform.toml`` is planned for deletion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lockgate.infra.resources import Resource, handlers
from lockgate.infra.state import StateVersion
from lockgate.platform import Environment, Platform

#: Attributes that say where a value comes from, not what exists.
_NOT_OBSERVED = frozenset({"value_env"})


@dataclass(frozen=True)
class Change:
    action: str  # create | update | delete
    resource: Resource
    before: dict[str, Any] | None
    drift: bool = False

    @property
    def address(self) -> str:
        return self.resource.address

    def diff(self) -> list[tuple[str, Any, Any]]:
        """``(attribute, before, after)`` for each attribute that changes."""
        before = self.before or {}
        after = {} if self.action == "delete" else self.resource.attrs
        keys = [k for k in sorted(set(before) | set(after)) if k not in _NOT_OBSERVED]
        return [(k, before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "address": self.address,
            "environment": self.resource.env,
            "kind": self.resource.kind,
            "drift": self.drift,
            "diff": [{"attribute": k, "before": b, "after": a} for k, b, a in self.diff()],
        }


@dataclass(frozen=True)
class Plan:
    changes: list[Change]
    resources: dict[str, Resource]
    base: StateVersion | None
    warnings: list[str] = field(default_factory=list)
    #: Recorded resources that no longer exist and need no change: dropped from the state.
    forget: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def counts(self) -> dict[str, int]:
        return {a: sum(c.action == a for c in self.changes) for a in ("create", "update", "delete")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_version": self.base.version if self.base else None,
            "has_changes": self.has_changes,
            "counts": self.counts(),
            "changes": [c.to_dict() for c in self.changes],
            "warnings": self.warnings,
        }


def _differs(desired: dict[str, Any], actual: dict[str, Any]) -> bool:
    return any(actual.get(k) != v for k, v in desired.items() if k not in _NOT_OBSERVED)


def _sort_key(
    change: Change, order: dict[str, int], envs: dict[str, int]
) -> tuple[int, int, int, str]:
    rank = order[change.resource.kind]
    if change.action == "delete":
        rank = len(order) * 2 - rank  # delete dependants first: bindings before roles
    return (
        0 if change.action != "delete" else 1,
        envs.get(change.resource.env, 99),
        rank,
        change.address,
    )


def compute_plan(
    platform: Platform,
    desired: list[Resource],
    base: StateVersion | None,
    *,
    kinds: frozenset[str] | None = None,
    destroy: bool = False,
) -> Plan:
    """Compare ``desired`` with reality (and with ``base`` for what Lockgate manages)."""
    kinds_order = {k: i for i, k in enumerate(handlers())}
    env_order = {e: i for i, e in enumerate(platform.env_names)}
    by_kind = handlers()
    wanted = {r.address: r for r in desired if kinds is None or r.kind in kinds}
    if destroy:
        wanted = {a: r for a, r in wanted.items() if by_kind[r.kind].bootstrap}
    recorded: dict[str, Resource] = {}
    for addr, raw in (base.resources if base else {}).items():
        res = Resource(raw["env"], raw["kind"], raw["name"], raw["attrs"])
        if (kinds is None or res.kind in kinds) and res.env in env_order:
            recorded[addr] = res
    if destroy:
        # Also what is declared but was never recorded (an apply killed before its state write).
        for res in desired:
            if (kinds is None or res.kind in kinds) and res.address not in recorded:
                recorded[res.address] = res

    changes: list[Change] = []
    warnings: list[str] = []
    forget: list[str] = []
    sessions = _Observer(platform)
    for addr in sorted(set(wanted) | set(recorded)):
        res = wanted.get(addr) or recorded[addr]
        handler = by_kind[res.kind]
        actual = sessions.observe(res)
        if addr in wanted:
            if (
                res.kind == "parameter"
                and res.attrs["secure"]
                and "fingerprint" not in res.attrs
                and actual is None
            ):
                source = res.attrs.get("value_env")
                warnings.append(
                    f"{addr} has no value yet: "
                    + (
                        f"set ${source} and apply"
                        if source
                        else f"run `lockgate param put {res.name} --secure`"
                    )
                )
                del wanted[addr]
                continue
            if actual is None:
                changes.append(Change("create", res, None, drift=addr in recorded))
            elif _differs(res.attrs, actual):
                was_applied = addr in recorded and not _differs(recorded[addr].attrs, res.attrs)
                changes.append(Change("update", res, actual, drift=was_applied))
        elif actual is not None and handler.deletable:
            changes.append(Change("delete", res, actual))
        else:
            forget.append(addr)
    changes.sort(key=lambda c: _sort_key(c, kinds_order, env_order))
    return Plan(changes, wanted, base, warnings, forget)


class _Observer:
    """Observes resources, opening one read transaction per environment store."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._store_ok: dict[str, bool] = {}

    def observe(self, res: Resource) -> dict[str, Any] | None:
        env = self.platform.env(res.env)
        handler = handlers()[res.kind]
        if not handler.in_store:
            return handler.observe(env, res.name, None)
        if not self._store_exists(env):
            return None
        with env.store.transaction() as session:
            return handler.observe(env, res.name, session)

    def _store_exists(self, env: Environment) -> bool:
        if env.name not in self._store_ok:
            self._store_ok[env.name] = env.store.exists()
        return self._store_ok[env.name]
