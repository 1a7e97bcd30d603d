"""Endpoints as the CLI and the API see them: the desired state, behind the policy check.

Creating, updating or deleting an endpoint records what should run; the endpoint controller in
the daemon (``lockgate up``) makes it so and reports the status back on the same row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lockgate.auth import audit
from lockgate.auth.policy import authorize
from lockgate.auth.principal import Principal
from lockgate.config.names import check_name
from lockgate.errors import ConflictError, LockgateError, NotFoundError, ValidationError
from lockgate.platform import Environment, Platform
from lockgate.serving.package import Manifest, manifest_of
from lockgate.serving.rollout import Alarms, parse_strategy
from lockgate.store import endpoints as db
from lockgate.store.endpoints import DELETING, UPDATING, Endpoint

#: Limits a user may set per endpoint, with their defaults.
MAX_BODY_BYTES = 6 * 1024 * 1024


@dataclass(frozen=True)
class EndpointConfig:
    """How an endpoint's instances run (the defaults suit a small model on a small machine)."""

    #: The share of requests (0–1) whose request and response are captured.
    capture: float = 0.0
    max_body_bytes: int = MAX_BODY_BYTES
    #: Seconds an instance may take to answer /ping after it starts (default: the package's).
    startup_timeout_s: float | None = None
    #: Threads each instance's numeric libraries may use (1 suits single-row requests).
    threads: int = 1
    #: Whether the gateway serves it without a token (default: a token with endpoint:invoke).
    public: bool = False

    def check(self) -> EndpointConfig:
        if not 0 <= self.capture <= 1:
            raise ValidationError(
                f"capture {self.capture} must be between 0 and 1 (a share of requests)."
            )
        if not 1024 <= self.max_body_bytes <= 100 * 1024 * 1024:
            raise ValidationError("max_body_bytes must be between 1 KiB and 100 MiB.")
        if self.startup_timeout_s is not None and not 0 < self.startup_timeout_s <= 3600:
            raise ValidationError("startup_timeout_s must be between 0 and 3600 seconds.")
        if not 1 <= self.threads <= 64:
            raise ValidationError("threads must be between 1 and 64.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "capture": self.capture,
            "max_body_bytes": self.max_body_bytes,
            "startup_timeout_s": self.startup_timeout_s,
            "threads": self.threads,
            "public": self.public,
        }


def _environment(platform: Platform, env: str | None) -> Environment:
    return platform.ready(env)


def approved_model(
    platform: Platform, principal: Principal, ref: str, env: Environment
) -> tuple[str, Manifest]:
    """The digest and manifest of approved model ``ref`` in ``env``."""
    from lockgate.registry import service as registry

    version = registry.get(platform, principal, ref, env=env.name)
    if version.status != registry.APPROVED:
        raise ConflictError(
            f"{version.ref} in {env.name} is {version.status}; only an approved version is served.",
            hint=f"Approve it first: lockgate model approve {version.ref} --env {env.name}",
        )
    digest = version.model_digest
    paths = env.artifacts.tree_paths(digest)

    def read(path: str) -> bytes:
        data = env.artifacts.tree_file(digest, path)
        assert data is not None
        return data

    return digest, manifest_of(paths, read, f"{env.name}:{version.ref}")


def _quota(env: Environment, existing: list[Endpoint], name: str, instances: int) -> None:
    quotas = env.spec.quotas
    others = [e for e in existing if e.name != name and e.status != DELETING]
    if not any(e.name == name for e in existing) and len(others) + 1 > quotas.max_endpoints:
        raise ValidationError(
            f"{env.name} already has {len(others)} endpoints; its quota is {quotas.max_endpoints}.",
            hint="Delete one, or raise [environments.ENV.quotas] max_endpoints and apply.",
        )
    used = sum(e.instances for e in others)
    if used + instances > quotas.max_instances:
        raise ValidationError(
            f"{instances} more instances would make {used + instances} in {env.name}; "
            f"its quota is {quotas.max_instances}.",
            hint="Use fewer instances, or raise [environments.ENV.quotas] max_instances and apply.",
        )


def create(
    platform: Platform,
    principal: Principal,
    name: str,
    model_ref: str,
    *,
    instances: int = 1,
    config: EndpointConfig | None = None,
    env: str | None = None,
) -> Endpoint:
    handle = _environment(platform, env)
    check_name(name, "endpoint")
    authorize(handle.store, principal, "endpoint:write", env=handle.name, target=name)
    _instances(instances)
    settings = (config or EndpointConfig()).check()
    digest, _ = approved_model(platform, principal, model_ref, handle)
    with handle.store.transaction() as session:
        existing = db.list_all(session)
        if any(e.name == name for e in existing):
            raise ConflictError(
                f"endpoint {name} already exists in {handle.name}.",
                hint=f"Change it with `lockgate endpoint update {name}`, or pick another name.",
            )
        _quota(handle, existing, name, instances)
        created = db.add(
            session, name, model_ref, digest, instances, settings.to_dict(), principal.name
        )
        audit.record(
            session,
            actor=principal.name,
            action="endpoint.create",
            target=name,
            details={"model": model_ref, "digest": digest, "instances": instances},
        )
    return created


def update(
    platform: Platform,
    principal: Principal,
    name: str,
    *,
    model_ref: str | None = None,
    instances: int | None = None,
    config: dict[str, Any] | None = None,
    strategy: str = "all-at-once",
    alarms: Alarms | None = None,
    env: str | None = None,
) -> Endpoint:
    """Change what ``name`` serves; the controller rolls it out blue/green, moving the traffic
    by ``strategy`` (see :mod:`lockgate.serving.rollout`) and rolling back when ``alarms`` fire."""
    handle = _environment(platform, env)
    authorize(handle.store, principal, "endpoint:write", env=handle.name, target=name)
    current = get(platform, principal, name, env=handle.name)
    if current.status == DELETING:
        raise ConflictError(f"endpoint {name} is being deleted.")
    if model_ref is None and instances is None and not config:
        raise ValidationError("nothing to change.", hint="Pass --model, --instances or a setting.")
    values: dict[str, Any] = {}
    details: dict[str, Any] = {}
    if model_ref is not None:
        values["model_digest"], _ = approved_model(platform, principal, model_ref, handle)
        values["model_ref"] = details["model"] = model_ref
    if instances is not None:
        values["instances"] = details["instances"] = _instances(instances)
    parsed = parse_strategy(strategy)
    watch = (alarms or Alarms()).check()
    base = {k: v for k, v in current.config.items() if k != "rollout"}
    merged = EndpointConfig(**{**base, **(config or {})}).check().to_dict()
    # Each update carries its own strategy: the next one starts from all-at-once again.
    merged["rollout"] = {
        "strategy": parsed.text(),
        "max_error_rate": watch.max_error_rate,
        "max_p99_ms": watch.max_p99_ms,
    }
    values["config"] = merged
    details["strategy"] = parsed.text()
    if config:
        details["config"] = config
    with handle.store.transaction() as session:
        fresh = db.get(session, name)
        assert fresh is not None
        _quota(handle, db.list_all(session), name, values.get("instances", fresh.instances))
        changed = db.change(
            session,
            name,
            principal.name,
            generation=fresh.generation + 1,
            status=UPDATING,
            reason=None,
            **values,
        )
        audit.record(
            session, actor=principal.name, action="endpoint.update", target=name, details=details
        )
    return changed


def delete(
    platform: Platform, principal: Principal, name: str, *, env: str | None = None
) -> Endpoint:
    """Mark ``name`` for deletion: the controller drains its instances, then removes it."""
    handle = _environment(platform, env)
    authorize(handle.store, principal, "endpoint:write", env=handle.name, target=name)
    get(platform, principal, name, env=handle.name)
    with handle.store.transaction() as session:
        marked = db.change(session, name, principal.name, status=DELETING)
        audit.record(session, actor=principal.name, action="endpoint.delete", target=name)
    return marked


def get(platform: Platform, principal: Principal, name: str, *, env: str | None = None) -> Endpoint:
    handle = _environment(platform, env)
    authorize(handle.store, principal, "endpoint:read", env=handle.name, target=name)
    with handle.store.read() as session:
        found = db.get(session, name)
    if found is None:
        raise NotFoundError(
            f"no endpoint {name} in {handle.name}.",
            hint=f"List them: lockgate endpoint list --env {handle.name}",
        )
    return found


def list_endpoints(
    platform: Platform, principal: Principal, *, env: str | None = None
) -> list[Endpoint]:
    handle = _environment(platform, env)
    authorize(handle.store, principal, "endpoint:read", env=handle.name, target="endpoints")
    with handle.store.read() as session:
        return db.list_all(session)


def check_invoke(
    platform: Platform, principal: Principal, name: str, *, env: str | None = None
) -> Endpoint:
    """The endpoint ``principal`` may invoke (the request itself goes through the gateway)."""
    handle = _environment(platform, env)
    authorize(handle.store, principal, "endpoint:invoke", env=handle.name, target=name)
    return get(platform, principal, name, env=handle.name)


def invoke(
    platform: Platform,
    principal: Principal,
    name: str,
    body: bytes,
    *,
    content_type: str = "application/json",
    accept: str = "application/json",
    env: str | None = None,
) -> bytes:
    """Send one request to ``name`` through its environment's gateway; the answer's body.

    An answer of 4xx or 5xx becomes the matching error, with the endpoint's own message.
    """
    import httpx

    from lockgate.config.daemon_files import running

    found = check_invoke(platform, principal, name, env=env)
    handle = _environment(platform, env)
    info = running(platform.home) or {}
    gateway = info.get("gateways", {}).get(handle.name)
    if gateway is None:
        raise ConflictError(
            "the daemon is not running, so no endpoint serves.",
            hint="Start it: lockgate up --detach",
        )
    url = f"{gateway}/endpoints/{found.name}/invocations"
    from lockgate.auth import tokens

    # A one-minute token for this request, signed with the environment's key (this process
    # may read it: it runs as the home's user).
    token = tokens.issue(handle.keys, handle.name, principal.name, ttl_s=60, via="cli")
    try:
        response = httpx.post(
            url,
            content=body,
            headers={
                "Content-Type": content_type,
                "Accept": accept,
                "Authorization": f"Bearer {token}",
            },
            timeout=60,
        )
    except httpx.HTTPError as exc:
        raise ConflictError(
            f"cannot reach {url}: {exc}", hint="Is the daemon running? lockgate status"
        ) from exc
    if response.status_code >= 400:
        raise _answer_error(response.status_code, response.text)
    return response.content


def _answer_error(status: int, text: str) -> LockgateError:
    import json

    try:
        message = str(json.loads(text).get("error", text))
    except (ValueError, AttributeError):
        message = text
    kind: type[LockgateError] = (
        NotFoundError
        if status == 404
        else ConflictError
        if status == 503
        else ValidationError
        if status < 500
        else LockgateError
    )
    return kind(f"the endpoint answered {status}: {message}")


def _instances(value: int) -> int:
    if not 1 <= value <= 64:
        raise ValidationError(f"instances {value} must be between 1 and 64.")
    return value
