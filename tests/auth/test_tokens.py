"""Access tokens, API tokens and the OIDC exchange, against real keys and a real issuer on
loopback: forged, expired, wrong-audience, ``alg: none`` and untrusted tokens are all refused."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from issuer import Issuer  # type: ignore[import-not-found]
from lockgate.auth import credentials, oidc, tokens
from lockgate.auth.principal import Principal
from lockgate.errors import AuthenticationError, PermissionDeniedError, ValidationError
from lockgate.infra import service as infra
from lockgate.platform import Platform


def _claims(env: str, **over: object) -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": "lockgate",
        "aud": f"lockgate:{env}",
        "sub": "user:mallory",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": "x",
        **over,
    }


def test_an_access_token_is_good_in_its_environment_only(
    platform: Platform, admin: Principal
) -> None:
    token = credentials.login(platform, admin, "dev")
    who = credentials.authenticate(platform, "dev", token)
    assert (who.principal, who.environment, who.via) == (admin, "dev", "login")
    assert credentials.environment_of(platform, token) == "dev"
    with pytest.raises(AuthenticationError, match="not for environment prod"):
        credentials.authenticate(platform, "prod", token)
    with pytest.raises(ValidationError):
        tokens.issue(platform.env("dev").keys, "dev", admin.name, ttl_s=0)


@pytest.mark.parametrize(
    "forge",
    [
        "expired",
        "other key",
        "alg none",
        "hmac with the public key",
        "tampered",
        "missing exp",
        "garbage",
    ],
)
def test_forged_and_stale_tokens_are_refused(
    platform: Platform, admin: Principal, forge: str
) -> None:
    keys = platform.env("dev").keys
    good = tokens.issue(keys, "dev", admin.name)
    if forge == "expired":
        own = tokens._private_key(keys)
        bad = jwt.encode(_claims("dev", exp=int(time.time()) - 120), own, algorithm="EdDSA")
    elif forge == "other key":
        bad = jwt.encode(_claims("dev"), Ed25519PrivateKey.generate(), algorithm="EdDSA")
    elif forge == "alg none":
        bad = jwt.encode(_claims("dev"), None, algorithm="none")
    elif forge == "hmac with the public key":
        from cryptography.hazmat.primitives import serialization

        public = (
            tokens._private_key(keys)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT"}')
        import hashlib
        import hmac
        import json

        payload = jwt.utils.base64url_encode(json.dumps(_claims("dev")).encode())
        signature = jwt.utils.base64url_encode(
            hmac.new(public, header + b"." + payload, hashlib.sha256).digest()
        )
        bad = (header + b"." + payload + b"." + signature).decode()
    elif forge == "tampered":
        head, body, sig = good.split(".")
        payload = jwt.utils.base64url_decode(body).replace(admin.name.encode(), b"user:mallory")
        bad = ".".join([head, jwt.utils.base64url_encode(payload).decode(), sig])
    elif forge == "missing exp":
        claims = _claims("dev")
        del claims["exp"]
        bad = jwt.encode(claims, tokens._private_key(keys), algorithm="EdDSA")
    else:
        bad = "not.a.token"
    with pytest.raises(AuthenticationError) as caught:
        credentials.authenticate(platform, "dev", bad)
    assert bad not in str(caught.value)  # the credential is never echoed


def test_api_tokens_are_hashed_revocable_and_scoped(platform: Platform, admin: Principal) -> None:
    record, secret = credentials.create_api_token(platform, admin, "dev", "nightly job")
    assert secret.startswith("lgt_dev_")
    who = credentials.authenticate(platform, "dev", secret)
    assert who.principal == admin and who.via == f"api-token:{record.id}"
    db_file = platform.home.root / "envs" / "dev" / "metadata.db"
    assert secret.rsplit("_", 1)[1].encode() not in db_file.read_bytes()  # only its hash is kept
    access, _ = credentials.exchange(platform, "dev", secret)
    assert credentials.authenticate(platform, "dev", access).principal == admin
    with pytest.raises(AuthenticationError):
        credentials.authenticate(platform, "prod", secret)
    with pytest.raises(AuthenticationError, match="not valid"):
        credentials.authenticate(platform, "dev", secret[:-4] + "AAAA")
    credentials.revoke_api_token(platform, admin, "dev", record.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        credentials.authenticate(platform, "dev", secret)


def test_tokens_for_others_need_auth_tokens(platform: Platform, admin: Principal) -> None:
    from lockgate.store import iam

    dev = platform.env("dev")
    with dev.store.transaction() as s:
        iam.add_binding(s, "user:dana", "data-scientist")
    dana = Principal("user:dana")
    mine, _ = credentials.create_api_token(platform, dana, "dev", "laptop")
    with pytest.raises(PermissionDeniedError, match="auth:tokens"):
        credentials.create_api_token(platform, dana, "dev", "x", principal=admin.name)
    assert [t.id for t in credentials.list_api_tokens(platform, dana, "dev")] == [mine.id]
    admins, _ = credentials.create_api_token(platform, admin, "dev", "ci", principal="user:dana")
    assert {t.id for t in credentials.list_api_tokens(platform, admin, "dev")} == {
        mine.id,
        admins.id,
    }
    with pytest.raises(AuthenticationError, match="holds no role"):
        credentials.login(platform, Principal("user:nobody"), "dev")


def _trust(platform: Platform, admin: Principal, issuer: Issuer) -> Platform:
    text = platform.home.platform_file.read_text()
    text += issuer.trust_toml(
        "repo:acme/shop:environment:prod",
        "service:shop-ci-prod",
        "prod",
        claims={"ref": "refs/heads/main"},
    )
    platform.home.platform_file.write_text(text)
    fresh = Platform.open(platform.home)
    infra.apply(fresh, admin, confirm=lambda plan: True)
    return fresh


def test_an_oidc_token_becomes_a_short_lived_ci_token(
    platform: Platform, admin: Principal, issuer: Issuer
) -> None:
    platform = _trust(platform, admin, issuer)
    access, who = oidc.exchange(platform, "prod", issuer.mint())
    assert who.principal == Principal("service:shop-ci-prod") and who.via == "oidc:github"
    checked = credentials.authenticate(platform, "prod", access)
    assert checked.principal.name == "service:shop-ci-prod"
    assert checked.expires_at - time.time() <= 900
    with pytest.raises(AuthenticationError, match="not for environment dev"):
        credentials.authenticate(platform, "dev", access)


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("other subject", PermissionDeniedError, "no trust of github admits"),
        ("other branch", PermissionDeniedError, "no trust of github admits"),
        ("other audience", AuthenticationError, "not valid"),
        ("expired", AuthenticationError, "expired"),
        ("untrusted issuer", AuthenticationError, "not trusted"),
        ("other key", AuthenticationError, "not valid"),
        ("alg none", AuthenticationError, "allows RS256"),
        ("unknown kid", AuthenticationError, "no key"),
        ("other environment", AuthenticationError, "not trusted in preprod"),
    ],
)
def test_untrusted_oidc_tokens_are_refused(
    platform: Platform,
    admin: Principal,
    issuer: Issuer,
    case: str,
    error: type[Exception],
    match: str,
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    platform = _trust(platform, admin, issuer)
    env = "prod"
    if case == "other subject":
        token = issuer.mint("repo:acme/other:environment:prod")
    elif case == "other branch":
        token = issuer.mint(ref="refs/heads/feature")
    elif case == "other audience":
        token = issuer.mint(aud="someone-else")
    elif case == "expired":
        token = issuer.mint(ttl=-120)
    elif case == "untrusted issuer":
        token = issuer.mint(iss="https://evil.example")
    elif case == "other key":
        token = issuer.mint(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    elif case == "alg none":
        token = jwt.encode(
            {
                "iss": issuer.url,
                "aud": "lockgate",
                "sub": "repo:acme/shop:environment:prod",
                "exp": int(time.time()) + 60,
                "iat": int(time.time()),
            },
            None,
            algorithm="none",
        )
    elif case == "unknown kid":
        token = issuer.mint(kid="rotated-away")
    else:
        env = "preprod"
        token = issuer.mint()
    with pytest.raises(error, match=match) as caught:
        oidc.exchange(platform, env, token)
    assert token not in str(caught.value)
    from lockgate.auth import audit

    with platform.env(env).store.read() as s:
        refusals = audit.list_events(s, action="auth.oidc_exchange")
    if case != "other environment":
        assert refusals and refusals[-1].outcome == "denied"
