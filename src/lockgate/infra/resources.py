"""The resource kinds ``infra apply`` manages, and how each is observed, created and deleted.

A resource is addressed like ``dev.bucket["data"]``. Its attributes are JSON values and never a
secret: a secure parameter is represented by a keyed fingerprint of its value.

The bootstrap kinds (stores, keys, roles and bindings) are created by ``lockgate init`` and kept
by ``destroy``: like a state bucket and the admin role, they hold what the rest stands on. Stores
and keys are never deleted by Lockgate at all.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from lockgate.auth import secrets
from lockgate.auth.keys import KEY_FILES
from lockgate.config.spec import PlatformSpec, fill
from lockgate.errors import ConflictError, ValidationError
from lockgate.ids import isoformat, utcnow
from lockgate.platform import Environment
from lockgate.store import automation, iam, params, settings


@dataclass(frozen=True)
class Resource:
    env: str
    kind: str
    name: str | None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return address(self.env, self.kind, self.name)


def address(env: str, kind: str, name: str | None) -> str:
    return f"{env}.{kind}" if name is None else f'{env}.{kind}["{name}"]'


class Handler(ABC):
    """How one kind of resource is observed and changed in an environment."""

    #: Created by ``init`` and kept by ``destroy``.
    bootstrap = False
    #: Deleted when it leaves ``platform.toml`` (stores and keys never are).
    deletable = True
    #: Lives in the metadata store, so its change and its audit event share one transaction.
    in_store = True

    @abstractmethod
    def observe(
        self, env: Environment, name: str | None, session: Session | None
    ) -> dict[str, Any] | None:
        """The resource's attributes as they are now, or None when it does not exist."""

    @abstractmethod
    def put(self, env: Environment, res: Resource, session: Session | None, actor: str) -> None:
        """Create the resource, or update it to ``res.attrs``."""

    def delete(
        self, env: Environment, name: str | None, session: Session | None, force: bool
    ) -> None:
        """Remove the resource; only called when ``deletable``."""
        raise NotImplementedError(f"{type(self).__name__} resources are never deleted")


class MetadataStoreHandler(Handler):
    bootstrap, deletable, in_store = True, False, False

    def observe(
        self, env: Environment, name: str | None, session: Session | None
    ) -> dict[str, Any] | None:
        if not env.store.exists():
            return None
        return {"url": env.store.display_url, "schema": env.store.revision()}

    def put(self, env: Environment, res: Resource, session: Session | None, actor: str) -> None:
        env.store.upgrade()


class ArtifactStoreHandler(Handler):
    bootstrap, deletable, in_store = True, False, False

    def observe(
        self, env: Environment, name: str | None, session: Session | None
    ) -> dict[str, Any] | None:
        return {"url": env.artifacts.url} if env.artifacts.exists() else None

    def put(self, env: Environment, res: Resource, session: Session | None, actor: str) -> None:
        env.artifacts.ensure()


class KeysHandler(Handler):
    bootstrap, deletable, in_store = True, False, False

    def observe(
        self, env: Environment, name: str | None, session: Session | None
    ) -> dict[str, Any] | None:
        found = env.keys.observe()
        return None if all(v == "missing" for v in found.values()) else found

    def put(self, env: Environment, res: Resource, session: Session | None, actor: str) -> None:
        env.keys.ensure()


class BucketHandler(Handler):
    in_store = False

    def observe(
        self, env: Environment, name: str | None, session: Session | None
    ) -> dict[str, Any] | None:
        assert name is not None
        return {"url": env.artifacts.path(name)} if env.artifacts.exists(name) else None

    def put(self, env: Environment, res: Resource, session: Session | None, actor: str) -> None:
        assert res.name is not None
        env.artifacts.ensure(res.name)

    def delete(
        self, env: Environment, name: str | None, session: Session | None, force: bool
    ) -> None:
        assert name is not None
        files = env.artifacts.files_in(name)
        if files and not force:
            raise ConflictError(
                f"bucket {name!r} of {env.name} holds {len(files)} file(s) (e.g. {files[0]}); "
                "it may hold models, so it is not deleted.",
                hint="Move what you need elsewhere, or pass --force to delete the files too.",
            )
        env.artifacts.remove(name)


class RoleHandler(Handler):
    bootstrap = True

    def observe(
        self, env: Environment, name: str | None, session: Session | None
    ) -> dict[str, Any] | None:
        assert session is not None and name is not None
        role = iam.get_role(session, name)
        return (
            None
            if role is None
            else {"description": role.description, "permissions": list(role.permissions)}
        )

    def put(self, env: Environment, res: Resource, session: Session | None, actor: str) -> None:
        assert session is not None and res.name is not None
        iam.put_role(
            session, iam.Role(res.name, res.attrs["description"], tuple(res.attrs["permissions"]))
        )

    def delete(
        self, env: Environment, name: str | None, session: Session | None, force: bool
    ) -> None:
        assert session is not None and name is not None
        iam.delete_role(session, name)


class BindingHandler(Handler):
    bootstrap = True

    def observe(
        self, env: Environment, name: str | None, session: Session | None
    ) -> dict[str, Any] | None:
        assert session is not None and name is not None
        principal, _, role = name.rpartition("/")
        return {} if (principal, role) in iam.list_bindings(session) else None

    def put(self, env: Environment, res: Resource, session: Session | None, actor: str) -> None:
        assert session is not None and res.name is not None
        principal, _, role = res.name.rpartition("/")
        iam.add_binding(session, principal, role)

    def delete(
        self, env: Environment, name: str | None, session: Session | None, force: bool
    ) -> None:
        assert session is not None and name is not None
        principal, _, role = name.rpartition("/")
        iam.delete_binding(session, principal, role)


class ParameterHandler(Handler):
    def observe(
        self, env: Environment, name: str | None, session: Session | None
    ) -> dict[str, Any] | None:
        assert session is not None and name is not None
        stored = params.get_parameter(session, name)
        if stored is None:
            return None
        attrs: dict[str, Any] = {
            "secure": stored.secure,
            "description": stored.description,
            "managed": stored.managed,
        }
        if stored.secure:
            attrs["fingerprint"] = secrets.fingerprint(
                env.keys, secrets.decrypt(env.keys, stored.value)
            )
        else:
            attrs["value"] = stored.value
        return attrs

    def put(self, env: Environment, res: Resource, session: Session | None, actor: str) -> None:
        assert session is not None and res.name is not None
        if res.attrs["secure"]:
            current = params.get_parameter(session, res.name)
            variable = res.attrs.get("value_env")
            if variable and os.environ.get(variable) is not None:
                value = secrets.encrypt(env.keys, os.environ[variable])
            elif current is not None and current.secure:
                value = current.value
            else:
                raise ValidationError(
                    f"secure parameter {res.name} has no value to apply.",
                    hint=f"Set ${variable} and apply again."
                    if variable
                    else f"Run `lockgate param put {res.name} --secure`.",
                )
        else:
            value = res.attrs["value"]
        params.put_parameter(
            session,
            name=res.name,
            secure=res.attrs["secure"],
            value=value,
            description=res.attrs["description"],
            managed=True,
            at=isoformat(utcnow()),
            by=actor,
        )

    def delete(
        self, env: Environment, name: str | None, session: Session | None, force: bool
    ) -> None:
        assert session is not None and name is not None
        params.delete_parameter(session, name)


class SettingHandler(Handler):
    def __init__(self, key: str) -> None:
        self.key = key

    def observe(
        self, env: Environment, name: str | None, session: Session | None
    ) -> dict[str, Any] | None:
        assert session is not None
        return settings.get_setting(session, self.key)

    def put(self, env: Environment, res: Resource, session: Session | None, actor: str) -> None:
        assert session is not None
        settings.put_setting(session, self.key, res.attrs)

    def delete(
        self, env: Environment, name: str | None, session: Session | None, force: bool
    ) -> None:
        assert session is not None
        settings.delete_setting(session, self.key)


class RuleHandler(Handler):
    """An automation rule, as the event worker reads it from the store."""

    def observe(
        self, env: Environment, name: str | None, session: Session | None
    ) -> dict[str, Any] | None:
        assert session is not None and name is not None
        rule = automation.get_rule(session, name)
        return None if rule is None else rule.spec

    def put(self, env: Environment, res: Resource, session: Session | None, actor: str) -> None:
        assert session is not None and res.name is not None
        automation.put_rule(session, res.name, res.attrs, actor)

    def delete(
        self, env: Environment, name: str | None, session: Session | None, force: bool
    ) -> None:
        assert session is not None and name is not None
        automation.delete_rule(session, name)


def handlers() -> dict[str, Handler]:
    """Every kind, in the order changes are applied (deletions run in reverse)."""
    return {
        "metadata_store": MetadataStoreHandler(),
        "artifact_store": ArtifactStoreHandler(),
        "keys": KeysHandler(),
        "role": RoleHandler(),
        "binding": BindingHandler(),
        "parameter": ParameterHandler(),
        "network_policy": SettingHandler("network_policy"),
        "quotas": SettingHandler("quotas"),
        "registry_policy": SettingHandler("registry_policy"),
        "oidc_trust": SettingHandler("oidc_trust"),
        "bucket": BucketHandler(),
        "rule": RuleHandler(),
    }


def bootstrap_kinds() -> frozenset[str]:
    return frozenset(kind for kind, handler in handlers().items() if handler.bootstrap)


def desired_resources(spec: PlatformSpec, env: Environment, home: str) -> list[Resource]:
    """What ``platform.toml`` declares for ``env``, as resources."""
    e = env.name
    out = [
        Resource(
            e, "metadata_store", None, {"url": env.store.display_url, "schema": _schema_head()}
        ),
        Resource(e, "artifact_store", None, {"url": env.artifacts.url}),
        Resource(e, "keys", None, dict.fromkeys(KEY_FILES, "ok")),
    ]
    for role_name, role in spec.roles.items():
        out.append(
            Resource(
                e,
                "role",
                role_name,
                {"description": role.description, "permissions": list(role.permissions)},
            )
        )
    for principal, role_name in spec.bindings_in(e):
        out.append(Resource(e, "binding", f"{principal}/{role_name}", {}))
    for name, p in spec.parameters_in(e).items():
        attrs: dict[str, Any] = {"secure": p.secure, "description": p.description, "managed": True}
        if not p.secure:
            attrs["value"] = fill(p.value or "", home, e)
        elif p.value_env:
            attrs["value_env"] = p.value_env
            clear = os.environ.get(p.value_env)
            if clear is not None and env.keys.observe()["encryption.key"] == "ok":
                attrs["fingerprint"] = secrets.fingerprint(env.keys, clear)
        out.append(Resource(e, "parameter", name, attrs))
    out.append(Resource(e, "network_policy", None, env.spec.network.model_dump(mode="json")))
    out.append(Resource(e, "quotas", None, env.spec.quotas.model_dump(mode="json")))
    out.append(Resource(e, "registry_policy", None, spec.registry.model_dump(mode="json")))
    if spec.oidc_in(e):
        out.append(Resource(e, "oidc_trust", None, {"issuers": spec.oidc_in(e)}))
    out.extend(Resource(e, "bucket", b, {"url": env.artifacts.path(b)}) for b in env.spec.buckets)
    for rule_name, rule in spec.rules_in(e).items():
        attrs = rule.model_dump(mode="json", exclude={"environments"})
        out.append(Resource(e, "rule", rule_name, attrs))
    return out


def _schema_head() -> str:
    from lockgate.store.migrate import SCHEMA_HEAD

    return SCHEMA_HEAD
