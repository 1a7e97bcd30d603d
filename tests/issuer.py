"""A real OIDC token issuer of the tests' own: RSA keys, a JWKS served over HTTP on loopback,
and tokens minted the way GitHub Actions' issuer shapes them."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


class Issuer:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/.well-known/jwks":
                    self.send_error(404)
                    return
                outer.fetches += 1
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks"

    def mint(
        self,
        sub: str = "repo:acme/shop:environment:prod",
        *,
        aud: str = "lockgate",
        iss: str | None = None,
        ttl: int = 300,
        key: Any = None,
        alg: str = "RS256",
        kid: str | None = None,
        **extra: Any,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": iss or self.url,
            "aud": aud,
            "sub": sub,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": f"jti-{now}-{sub}",
            "ref": "refs/heads/main",
            **extra,
        }
        return jwt.encode(
            claims,
            key if key is not None else self.key,
            algorithm=alg,
            headers={"kid": kid or self.kid},
        )

    def trust_toml(
        self, subject: str, principal: str, env: str, claims: dict[str, str] | None = None
    ) -> str:
        """A ``platform.toml`` section trusting this issuer as ``github``: tokens for
        ``subject`` (and ``claims``) act as ``principal`` in ``env``."""
        import json

        extra = ""
        if claims:
            pairs = ", ".join(f"{k} = {json.dumps(v)}" for k, v in claims.items())
            extra = f"claims = {{ {pairs} }}\n"
        return f"""
[oidc.github]
issuer = "{self.url}"
audience = "lockgate"
jwks_url = "{self.jwks_url}"

[[oidc.github.trust]]
subject = "{subject}"
{extra}principal = "{principal}"
environments = ["{env}"]
"""

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
