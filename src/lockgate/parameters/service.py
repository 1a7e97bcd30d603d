"""The parameter service: put, get, list and delete, each authorised and audited.

A secure value is encrypted with its environment's key before it reaches the store, and its
clear value is returned only to a caller holding ``param:decrypt`` (an audited access). Neither
the audit log nor any error message ever carries a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lockgate.auth import audit, secrets
from lockgate.auth.policy import authorize
from lockgate.auth.principal import Principal
from lockgate.config.names import parameter_environment
from lockgate.errors import ConflictError, NotFoundError, ValidationError
from lockgate.ids import isoformat, utcnow
from lockgate.platform import Environment, Platform
from lockgate.store import params

MAX_VALUE_BYTES = 16_384
HIDDEN = "********"


@dataclass(frozen=True)
class Parameter:
    name: str
    environment: str
    secure: bool
    value: str | None  # None for a secure value that was not decrypted
    description: str
    managed: bool
    version: int
    updated_at: str
    updated_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "environment": self.environment,
            "type": "SecureString" if self.secure else "String",
            "value": self.value,
            "description": self.description,
            "managed": self.managed,
            "version": self.version,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }


def _env_of(platform: Platform, name: str) -> Environment:
    return platform.env(parameter_environment(name))


def _view(env: Environment, stored: params.StoredParameter, clear: str | None) -> Parameter:
    value = clear if stored.secure else stored.value
    return Parameter(
        stored.name,
        env.name,
        stored.secure,
        value,
        stored.description,
        stored.managed,
        stored.version,
        stored.updated_at,
        stored.updated_by,
    )


def put(
    platform: Platform,
    principal: Principal,
    name: str,
    value: str,
    *,
    secure: bool = False,
    description: str | None = None,
) -> Parameter:
    """Create or replace parameter ``name``; returns it (with no clear secure value)."""
    env = _env_of(platform, name)
    if not value:
        raise ValidationError(
            f"parameter {name}: the value is empty.", hint="Give a non-empty value."
        )
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise ValidationError(
            f"parameter {name}: the value is larger than {MAX_VALUE_BYTES} bytes.",
            hint="Store large values as artifacts and put their address in the parameter.",
        )
    declared = platform.spec.parameters.get(name)
    if declared is not None and not (declared.secure and declared.value_env is None):
        raise ConflictError(
            f"parameter {name} is managed by {platform.home.platform_file}.",
            hint="Change it there and run `lockgate infra apply`.",
        )
    if declared is not None and declared.secure != secure:
        raise ValidationError(
            f"parameter {name} is declared secure in platform.toml.", hint="Pass --secure."
        )
    authorize(env.store, principal, "param:write", env=env.name, target=name)
    stored_value = secrets.encrypt(env.keys, value) if secure else value
    with env.store.transaction() as session:
        existing = params.get_parameter(session, name)
        if existing is not None and existing.secure != secure:
            kind = "secure" if existing.secure else "plain"
            raise ConflictError(
                f"parameter {name} exists as a {kind} parameter.",
                hint="Delete it first to change its type.",
            )
        if description is None:
            description = (
                existing.description if existing else (declared.description if declared else "")
            )
        version = params.put_parameter(
            session,
            name=name,
            secure=secure,
            value=stored_value,
            description=description,
            managed=declared is not None,
            at=isoformat(utcnow()),
            by=principal.name,
        )
        audit.record(
            session,
            actor=principal.name,
            action="param.put",
            target=name,
            details={"secure": secure, "version": version},
        )
        stored = params.get_parameter(session, name)
    assert stored is not None
    return _view(env, stored, None)


def get(platform: Platform, principal: Principal, name: str, *, decrypt: bool = False) -> Parameter:
    """Parameter ``name``; a secure value is returned in clear only with ``decrypt``."""
    env = _env_of(platform, name)
    authorize(env.store, principal, "param:read", env=env.name, target=name)
    with env.store.transaction() as session:
        stored = params.get_parameter(session, name)
    if stored is None:
        raise NotFoundError(
            f"parameter {name} does not exist in {env.name}.",
            hint=f"List them with `lockgate param list --env {env.name}`.",
        )
    if not (decrypt and stored.secure):
        return _view(env, stored, None)
    authorize(env.store, principal, "param:decrypt", env=env.name, target=name)
    clear = secrets.decrypt(env.keys, stored.value)
    with env.store.transaction() as session:
        audit.record(
            session,
            actor=principal.name,
            action="param.decrypt",
            target=name,
            details={"version": stored.version},
        )
    return _view(env, stored, clear)


def list_parameters(
    platform: Platform, principal: Principal, *, env: str | None = None, prefix: str = ""
) -> list[Parameter]:
    """Parameters of ``env`` (default: every environment), optionally under ``prefix``."""
    names = [platform.env(env).name] if env else platform.env_names
    out: list[Parameter] = []
    for name in names:
        handle = platform.env(name)
        if not handle.store.exists():
            continue
        authorize(
            handle.store, principal, "param:read", env=name, target=prefix or f"/lockgate/{name}"
        )
        with handle.store.transaction() as session:
            out.extend(_view(handle, p, None) for p in params.list_parameters(session, prefix))
    return out


def delete(platform: Platform, principal: Principal, name: str) -> None:
    env = _env_of(platform, name)
    if name in platform.spec.parameters:
        raise ConflictError(
            f"parameter {name} is managed by {platform.home.platform_file}.",
            hint="Remove it there and run `lockgate infra apply`.",
        )
    authorize(env.store, principal, "param:write", env=env.name, target=name)
    with env.store.transaction() as session:
        if not params.delete_parameter(session, name):
            raise NotFoundError(f"parameter {name} does not exist in {env.name}.")
        audit.record(session, actor=principal.name, action="param.delete", target=name)
