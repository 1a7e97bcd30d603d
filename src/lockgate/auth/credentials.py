"""Who a request is: access tokens, API tokens, and the local login.

- An **access token** is a short-lived JWT for one environment (:mod:`lockgate.auth.tokens`).
- An **API token** (``lgt_ENV_ID_SECRET``) is for automation: it lives up to a year, is stored
  only as the SHA-256 of its secret, can be revoked, and is exchanged for access tokens.
- ``lockgate auth login`` gives the OS user running the CLI an access token: whoever can read the
  home's keys is already that user on this machine. There is no password anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from lockgate.auth import audit
from lockgate.auth import tokens as jwt_tokens
from lockgate.auth.policy import authorize
from lockgate.auth.principal import Principal
from lockgate.config.names import check_principal
from lockgate.errors import AuthenticationError, NotFoundError, ValidationError
from lockgate.ids import isoformat, new_id, utcnow
from lockgate.platform import Environment, Platform
from lockgate.store import iam
from lockgate.store import tokens as db

PREFIX = "lgt_"
TOKEN_RE = re.compile(
    r"^lgt_(?P<env>[a-z][a-z0-9-]{0,39})_(?P<id>[0-9A-Z]{26})_(?P<secret>[A-Za-z0-9_-]{43})$"
)
MAX_DAYS = 365


@dataclass(frozen=True)
class Authenticated:
    principal: Principal
    environment: str
    via: str
    expires_at: int


def _hash(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def environment_of(platform: Platform, bearer: str) -> str:
    """Which environment a credential is for (checked, not trusted: verification follows)."""
    match = TOKEN_RE.match(bearer)
    if match:
        return match.group("env")
    import jwt

    try:
        claims = jwt.decode(bearer, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AuthenticationError(
            "the credential is neither an access token nor an API token."
        ) from None
    aud = str(claims.get("aud", ""))
    env = aud.removeprefix("lockgate:")
    if not aud.startswith("lockgate:") or env not in platform.env_names:
        raise AuthenticationError("the access token is not for an environment of this platform.")
    return env


def authenticate(platform: Platform, env: str, bearer: str) -> Authenticated:
    """The principal behind ``bearer`` in ``env``; :class:`AuthenticationError` otherwise."""
    handle = platform.ready(env)
    if bearer.startswith(PREFIX):
        return _api_token(handle, bearer)
    claims = jwt_tokens.verify(handle.keys, env, bearer)
    return Authenticated(Principal(claims.principal), env, claims.via, claims.expires_at)


def _api_token(env: Environment, bearer: str) -> Authenticated:
    match = TOKEN_RE.match(bearer)
    if not match or match.group("env") != env.name:
        raise AuthenticationError(f"the API token is malformed or not for environment {env.name}.")
    with env.store.read() as session:
        found = db.get_with_hash(session, match.group("id"))
    if found is None or not hmac.compare_digest(found[1], _hash(match.group("secret"))):
        raise AuthenticationError("the API token is not valid.")
    token = found[0]
    if token.revoked_at is not None:
        raise AuthenticationError(f"the API token {token.id} was revoked at {token.revoked_at}.")
    if token.expires_at < time.time():
        raise AuthenticationError(
            f"the API token {token.id} has expired.", hint="Create a new one."
        )
    with env.store.transaction() as session:
        db.change(session, token.id, last_used_at=isoformat(utcnow()))
    return Authenticated(
        Principal(token.principal), env.name, f"api-token:{token.id}", int(token.expires_at)
    )


def login(
    platform: Platform, principal: Principal, env: str, *, ttl_s: int = jwt_tokens.ACCESS_TTL_S
) -> str:
    """An access token for ``principal`` (who holds a role in ``env``)."""
    handle = platform.ready(env)
    _has_a_role(handle, principal)
    token = jwt_tokens.issue(handle.keys, env, principal.name, ttl_s=ttl_s, via="login")
    with handle.store.transaction() as session:
        audit.record(
            session, actor=principal.name, action="auth.login", target=env, details={"ttl_s": ttl_s}
        )
    return token


def exchange(platform: Platform, env: str, bearer: str) -> tuple[str, Authenticated]:
    """An access token for the principal of a valid API token (``POST /auth/token``)."""
    if not bearer.startswith(PREFIX):
        raise AuthenticationError("only an API token is exchanged here.")
    who = authenticate(platform, env, bearer)
    handle = platform.env(env)
    token = jwt_tokens.issue(handle.keys, env, who.principal.name, via=who.via)
    with handle.store.transaction() as session:
        audit.record(
            session,
            actor=who.principal.name,
            action="auth.exchange",
            target=env,
            details={"via": who.via},
        )
    return token, who


def _has_a_role(env: Environment, principal: Principal) -> None:
    with env.store.read() as session:
        if not iam.roles_of(session, principal.name):
            raise AuthenticationError(
                f"{principal} holds no role in {env.name}, so it cannot log in there.",
                hint="Ask a platform admin for a binding ([[bindings]] in platform.toml).",
            )


def create_api_token(
    platform: Platform,
    caller: Principal,
    env: str,
    name: str,
    *,
    principal: str | None = None,
    days: int = 90,
) -> tuple[db.ApiToken, str]:
    """A new API token for ``principal`` (default: the caller); the secret is returned once."""
    handle = platform.ready(env)
    owner = check_principal(principal or caller.name)
    if owner != caller.name:
        authorize(handle.store, caller, "auth:tokens", env=env, target=owner)
    if not 1 <= days <= MAX_DAYS:
        raise ValidationError(f"an API token lives 1 to {MAX_DAYS} days, not {days}.")
    if not name or len(name) > 100:
        raise ValidationError("give the token a name of 1 to 100 characters (what uses it).")
    _has_a_role(handle, Principal(owner))
    secret = secrets.token_urlsafe(32)
    token = db.ApiToken(
        new_id(), owner, name, isoformat(utcnow()), caller.name, time.time() + days * 86400
    )
    with handle.store.transaction() as session:
        db.add(session, token, _hash(secret))
        audit.record(
            session,
            actor=caller.name,
            action="auth.token.create",
            target=token.id,
            details={"principal": owner, "name": name, "days": days},
        )
    return token, f"{PREFIX}{env}_{token.id}_{secret}"


def list_api_tokens(platform: Platform, caller: Principal, env: str) -> list[db.ApiToken]:
    """Every token in ``env`` with ``auth:tokens``; else the caller's own."""
    from lockgate.auth.policy import is_allowed

    handle = platform.ready(env)
    mine_only = not is_allowed(handle.store, caller, "auth:tokens")
    with handle.store.read() as session:
        return db.list_all(session, caller.name if mine_only else None)


def revoke_api_token(platform: Platform, caller: Principal, env: str, token_id: str) -> db.ApiToken:
    handle = platform.ready(env)
    with handle.store.read() as session:
        found = db.get_with_hash(session, token_id)
    if found is None:
        raise NotFoundError(
            f"there is no API token {token_id} in {env}.",
            hint=f"List them: lockgate auth token list --env {env}",
        )
    token = found[0]
    if token.principal != caller.name:
        authorize(handle.store, caller, "auth:tokens", env=env, target=token_id)
    with handle.store.transaction() as session:
        db.change(session, token_id, revoked_at=isoformat(utcnow()), revoked_by=caller.name)
        audit.record(
            session,
            actor=caller.name,
            action="auth.token.revoke",
            target=token_id,
            details={"principal": token.principal},
        )
    with handle.store.read() as session:
        again = db.get_with_hash(session, token_id)
    assert again is not None
    return again[0]
