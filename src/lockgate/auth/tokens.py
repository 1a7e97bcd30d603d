"""Short-lived access tokens: JWTs signed with the environment's Ed25519 key.

    {"iss": "lockgate", "aud": "lockgate:ENV", "sub": "user:alice", "iat": …, "nbf": …,
     "exp": iat + 900, "jti": "01J…", "via": "login" | "api-token" | "oidc:github"}

A token is good in one environment (its audience) for 15 minutes by default. Verification
accepts only EdDSA (so ``alg: none`` and an HMAC token made with the public key are refused),
requires every claim above, and allows 30 s of clock skew. Failures are
:class:`AuthenticationError` (HTTP 401) with a message that names the problem but never echoes the
token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from lockgate.auth.keys import SIGNING_FILE, EnvKeys
from lockgate.errors import AuthenticationError
from lockgate.ids import new_id

ISSUER = "lockgate"
ALGORITHM = "EdDSA"
ACCESS_TTL_S = 900
MAX_TTL_S = 12 * 3600
LEEWAY_S = 30
REQUIRED = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"]


@dataclass(frozen=True)
class Claims:
    principal: str
    environment: str
    expires_at: int
    token_id: str
    via: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "environment": self.environment,
            "expires_at": self.expires_at,
            "token_id": self.token_id,
            "via": self.via,
        }


def audience(env: str) -> str:
    return f"lockgate:{env}"


def _private_key(keys: EnvKeys) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(keys.read(SIGNING_FILE), password=None)


def issue(
    keys: EnvKeys, env: str, principal: str, *, ttl_s: int = ACCESS_TTL_S, via: str = "login"
) -> str:
    """A signed access token for ``principal`` in ``env``."""
    import jwt

    if not 1 <= ttl_s <= MAX_TTL_S:
        from lockgate.errors import ValidationError

        raise ValidationError(f"a token lives 1 s to {MAX_TTL_S // 3600} h, not {ttl_s} s.")
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": audience(env),
        "sub": principal,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
        "jti": new_id(),
        "via": via,
    }
    return jwt.encode(claims, _private_key(keys), algorithm=ALGORITHM)


def verify(keys: EnvKeys, env: str, token: str) -> Claims:
    """The claims of a valid access token for ``env``; else :class:`AuthenticationError`."""
    import jwt

    try:  # each environment signs with its own key: say "wrong environment" before "forged"
        aimed = jwt.decode(token, options={"verify_signature": False}).get("aud")
    except jwt.PyJWTError as exc:
        raise AuthenticationError(f"the access token is not valid: {_reason(exc)}.") from None
    if aimed != audience(env):
        raise AuthenticationError(
            f"the access token is not for environment {env}.",
            hint=f"Log in to {env}: lockgate auth login --env {env}",
        )
    public = _private_key(keys).public_key()
    try:
        claims = jwt.decode(
            token,
            public,
            algorithms=[ALGORITHM],
            audience=audience(env),
            issuer=ISSUER,
            leeway=LEEWAY_S,
            options={"require": REQUIRED},
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationError(
            "the access token has expired.", hint="Get a new one: lockgate auth login"
        ) from None
    except jwt.InvalidAudienceError:
        raise AuthenticationError(
            f"the access token is not for environment {env}.",
            hint=f"Log in to {env}: lockgate auth login --env {env}",
        ) from None
    except jwt.PyJWTError as exc:
        raise AuthenticationError(f"the access token is not valid: {_reason(exc)}.") from None
    return Claims(
        str(claims["sub"]), env, int(claims["exp"]), str(claims["jti"]), str(claims.get("via", ""))
    )


def _reason(exc: Exception) -> str:
    """PyJWT's reason, which describes the token's shape and never contains the token."""
    text = str(exc) or type(exc).__name__
    return text[:200]
