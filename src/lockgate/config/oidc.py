"""``[oidc.NAME]`` in ``platform.toml``: external OIDC issuers whose tokens Lockgate trusts.

    [oidc.github]
    issuer = "https://token.actions.githubusercontent.com"
    audience = "lockgate"
    jwks_url = "https://token.actions.githubusercontent.com/.well-known/jwks"   # or jwks_file
    algorithms = ["RS256"]
    ttl_s = 900                                  # the Lockgate token it gives, in seconds

    [[oidc.github.trust]]
    subject = "repo:acme/churn:environment:prod" # glob over the token's `sub`
    claims = { ref = "refs/heads/main" }         # more claims that must be equal
    principal = "service:churn-ci-prod"          # who the exchanged token acts as
    environments = ["prod"]

Nothing is trusted unless a trust entry names it: the subject, any extra claims, the principal
and the environments it may act in.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from lockgate.config.fields import Name, PrincipalName, Strict

Algorithm = Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


def _url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


def _rs256() -> list[Algorithm]:
    return ["RS256"]


class OidcTrust(Strict):
    subject: str = Field(min_length=1, max_length=500)
    claims: dict[str, str] = Field(default_factory=dict)
    principal: PrincipalName
    environments: list[Name] = Field(min_length=1)

    @model_validator(mode="after")
    def _service(self) -> Self:
        if not self.principal.startswith("service:"):
            raise ValueError(f"an OIDC trust acts as a service principal, not {self.principal}")
        if self.subject.strip("*?") == "":
            raise ValueError("a trust's subject must name something (not only wildcards)")
        return self


class OidcIssuer(Strict):
    issuer: Annotated[str, AfterValidator(_url)]
    audience: str = Field(min_length=1)
    jwks_url: Annotated[str, AfterValidator(_url)] | None = None
    jwks_file: str | None = None
    algorithms: list[Algorithm] = Field(default_factory=_rs256, min_length=1)
    ttl_s: int = Field(default=900, ge=60, le=3600)
    trust: list[OidcTrust] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError("give exactly one of jwks_url and jwks_file")
        return self

    def applied(self, env: str) -> dict[str, object] | None:
        """What ``env`` keeps of this issuer: its settings and the trusts that name ``env``."""
        trusts = [t.model_dump(mode="json") for t in self.trust if env in t.environments]
        if not trusts:
            return None
        return {**self.model_dump(mode="json", exclude={"trust"}), "trust": trusts}
