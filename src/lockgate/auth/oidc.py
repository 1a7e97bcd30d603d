"""OIDC federation: exchange an external identity token (e.g. a GitHub Actions job's) for a
short-lived Lockgate access token, under the trusts applied to the environment.

The token is verified against its issuer's JWKS (a URL, cached for five minutes and fetched again
for a key id it does not know, at most every 30 s; or a file): signature with one of the issuer's
declared algorithms (never ``none`` or HMAC), expiry, not-before, issuer and audience. Then a trust
must admit it: its ``sub`` matches the trust's subject pattern and every extra claim is equal. The
exchanged token acts as the trust's service principal — a project's CI principal — in that one
environment. Every exchange, and every refusal, is audited; the incoming token never is.
"""

from __future__ import annotations

import json
import threading
import time
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from lockgate.auth import audit
from lockgate.auth import tokens as jwt_tokens
from lockgate.auth.credentials import Authenticated
from lockgate.auth.principal import Principal
from lockgate.errors import AuthenticationError, PermissionDeniedError
from lockgate.platform import Environment, Platform
from lockgate.store import settings

JWKS_TTL_S = 300.0
REFETCH_AFTER_S = 30.0
MAX_TOKEN_BYTES = 16_384
LEEWAY_S = 30

_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_cache_lock = threading.Lock()


def _issuers(env: Environment) -> dict[str, dict[str, Any]]:
    with env.store.read() as session:
        applied = settings.get_setting(session, "oidc_trust") or {}
    return dict(applied.get("issuers", {}))


def _jwks(config: dict[str, Any], *, fresh: bool = False) -> dict[str, Any]:
    if config.get("jwks_file"):
        return dict(json.loads(Path(config["jwks_file"]).read_text()))
    import httpx

    url = config["jwks_url"]
    with _cache_lock:
        cached = _cache.get(url)
    now = time.monotonic()
    if cached and now - cached[0] < (REFETCH_AFTER_S if fresh else JWKS_TTL_S):
        return cached[1]
    try:
        response = httpx.get(url, timeout=5.0)
        response.raise_for_status()
        keys = dict(response.json())
    except (httpx.HTTPError, ValueError) as exc:
        raise AuthenticationError(
            f"cannot read the issuer's keys from {url}: {type(exc).__name__}."
        ) from None
    with _cache_lock:
        _cache[url] = (now, keys)
    return keys


def _key_for(config: dict[str, Any], kid: str | None) -> Any:
    import jwt

    for fresh in (False, True):
        for jwk in _jwks(config, fresh=fresh).get("keys", []):
            if kid is None or jwk.get("kid") == kid:
                try:
                    return jwt.PyJWK(jwk).key
                except jwt.PyJWTError:
                    continue
    raise AuthenticationError(f"the issuer has no key {kid!r} for this token.")


def exchange(platform: Platform, env: str, token: str) -> tuple[str, Authenticated]:
    """A Lockgate access token for the trust that admits ``token`` in ``env``."""
    import jwt

    handle = platform.ready(env)
    if len(token.encode()) > MAX_TOKEN_BYTES:
        raise AuthenticationError("the identity token is too large.")
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AuthenticationError("the identity token is not a JWT.") from None
    issuer = str(unverified.get("iss", ""))
    found = [(name, c) for name, c in _issuers(handle).items() if c["issuer"] == issuer]
    if not found:
        _refuse(handle, "service:unknown", f"untrusted issuer {issuer[:200]!r}")
        raise AuthenticationError(f"tokens of issuer {issuer[:200]!r} are not trusted in {env}.")
    name, config = found[0]
    if header.get("alg") not in config["algorithms"]:
        _refuse(handle, "service:unknown", f"algorithm {header.get('alg')!r}")
        raise AuthenticationError(
            f"the identity token is signed with {header.get('alg')!r}; {name} allows {', '.join(config['algorithms'])}."
        )
    try:
        key = _key_for(config, header.get("kid"))
    except AuthenticationError as exc:
        _refuse(handle, "service:unknown", f"{name}: {exc.message}")
        raise
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=config["algorithms"],
            audience=config["audience"],
            issuer=config["issuer"],
            leeway=LEEWAY_S,
            options={"require": ["iss", "aud", "sub", "exp", "iat"]},
        )
    except jwt.ExpiredSignatureError:
        _refuse(handle, "service:unknown", f"{name}: expired")
        raise AuthenticationError("the identity token has expired.") from None
    except jwt.PyJWTError as exc:
        _refuse(handle, "service:unknown", f"{name}: {type(exc).__name__}")
        raise AuthenticationError(f"the identity token is not valid: {str(exc)[:200]}.") from None
    subject = str(claims["sub"])
    for trust in config["trust"]:
        if fnmatchcase(subject, trust["subject"]) and all(
            str(claims.get(k)) == v for k, v in trust.get("claims", {}).items()
        ):
            principal = trust["principal"]
            access = jwt_tokens.issue(
                handle.keys, env, principal, ttl_s=int(config["ttl_s"]), via=f"oidc:{name}"
            )
            with handle.store.transaction() as session:
                audit.record(
                    session,
                    actor=principal,
                    action="auth.oidc_exchange",
                    target=env,
                    details={
                        "issuer": name,
                        "subject": subject[:500],
                        "jti": str(claims.get("jti", ""))[:100],
                    },
                )
            expires = int(time.time()) + int(config["ttl_s"])
            return access, Authenticated(Principal(principal), env, f"oidc:{name}", expires)
    _refuse(handle, "service:unknown", f"{name}: no trust admits subject {subject[:200]!r}")
    raise PermissionDeniedError(
        f"no trust of {name} admits subject {subject[:200]!r} in {env}.",
        hint=f"Add an [[oidc.{name}.trust]] for it in platform.toml, then lockgate infra apply.",
    )


def _refuse(env: Environment, actor: str, reason: str) -> None:
    audit.record_refusal(
        env.store, actor=actor, action="auth.oidc_exchange", target=env.name, reason=reason
    )
