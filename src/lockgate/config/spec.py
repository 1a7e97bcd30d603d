"""The schema of ``platform.toml``: the platform described as code.

Names are checked with the one naming rule; every cross-reference (a binding's environments and
role, a parameter's environment) must name something declared. Store URLs may use ``{home}`` and
``{env}``, filled in by :meth:`EnvironmentSpec.resolved`.
"""

from __future__ import annotations

import itertools
import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Annotated, Self

from pydantic import AfterValidator, Field, model_validator

from lockgate.backends import artifact_backends, check_url, metadata_backends
from lockgate.config.fields import Name, PrincipalName, Strict
from lockgate.config.names import PARAM_RULE, parameter_environment
from lockgate.config.oidc import OidcIssuer
from lockgate.config.roles import is_known_pattern
from lockgate.config.rules import RuleSpec, WebhookAction
from lockgate.errors import LockgateError


def _metadata_url(value: str) -> str:
    try:
        return check_url(value, metadata_backends(), "metadata store")
    except LockgateError as exc:
        raise ValueError(str(exc)) from exc


def _artifact_url(value: str) -> str:
    try:
        return check_url(value, artifact_backends(), "artifact store")
    except LockgateError as exc:
        raise ValueError(str(exc)) from exc


def _permission(value: str) -> str:
    if not is_known_pattern(value):
        raise ValueError(f"unknown permission {value!r} (see `lockgate env roles`)")
    return value


def fill(text: str, home: str, env: str) -> str:
    """``text`` with the ``{home}`` and ``{env}`` placeholders filled in."""
    return text.replace("{home}", home).replace("{env}", env)


Permission = Annotated[str, AfterValidator(_permission)]


def _loopback_networks() -> list[IPv4Network | IPv6Network]:
    return [IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")]


class NetworkPolicy(Strict):
    """Where an environment's services listen and who may call them."""

    bind_host: IPv4Address | IPv6Address = IPv4Address("127.0.0.1")
    port_range: tuple[int, int]
    allowed_clients: list[IPv4Network | IPv6Network] = Field(default_factory=_loopback_networks)
    #: Requests a second one client address may send to the gateway (a burst of twice that is
    #: allowed); None: no limit.
    max_requests_per_s: int | None = Field(default=None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _ports(self) -> Self:
        low, high = self.port_range
        if not 1024 <= low <= high <= 65535:
            raise ValueError(
                f"port_range {list(self.port_range)} must be [LOW, HIGH] with 1024 <= LOW <= HIGH <= 65535"
            )
        return self


class Quotas(Strict):
    """Limits on what an environment may run."""

    max_endpoints: int = Field(default=10, ge=0, le=10_000)
    max_instances: int = Field(default=20, ge=0, le=100_000)


class EnvironmentSpec(Strict):
    """One isolated environment: its stores, buckets, network policy and quotas."""

    metadata_url: Annotated[str, AfterValidator(_metadata_url)] = (
        "sqlite:///{home}/envs/{env}/metadata.db"
    )
    artifact_url: Annotated[str, AfterValidator(_artifact_url)] = (
        "file://{home}/envs/{env}/artifacts"
    )
    buckets: list[Name] = Field(default_factory=lambda: ["data", "models"])
    network: NetworkPolicy
    quotas: Quotas = Field(default_factory=Quotas)

    def resolved(self, home: str, env: str) -> EnvironmentSpec:
        """This environment with ``{home}`` and ``{env}`` filled in its URLs."""
        return self.model_copy(
            update={
                "metadata_url": fill(self.metadata_url, home, env),
                "artifact_url": fill(self.artifact_url, home, env),
            }
        )


class RoleSpec(Strict):
    description: str = ""
    permissions: list[Permission]


class BindingSpec(Strict):
    """Grants ``role`` to ``principal`` in each of ``environments``."""

    principal: PrincipalName
    role: Name
    environments: list[Name] = Field(min_length=1)


class ParameterSpec(Strict):
    """A parameter managed by ``infra apply``.

    A plain parameter has a ``value``. A secure one never has its value in this file: it takes it
    from the environment variable ``value_env`` at apply time, or, without ``value_env``, keeps
    the value set with ``lockgate param put --secure``.
    """

    value: str | None = None
    secure: bool = False
    value_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    description: str = ""

    @model_validator(mode="after")
    def _value_rules(self) -> Self:
        if self.secure and self.value is not None:
            raise ValueError(
                "a secure parameter must not hold its value in platform.toml: "
                "use value_env = 'VARIABLE' or `lockgate param put --secure`"
            )
        if not self.secure and self.value_env is not None:
            raise ValueError("value_env is only for secure parameters; give a plain value instead")
        if not self.secure and self.value is None:
            raise ValueError("a plain parameter needs a value")
        return self


_GATE_RE = re.compile(r"^\s*(<=|<|>=|>|==)\s*(-?[0-9]+(?:\.[0-9]+)?(?:[eE]-?[0-9]+)?)\s*$")


def _gate(value: str) -> str:
    if not _GATE_RE.match(value):
        raise ValueError(f"gate {value!r} is not a comparison such as '<= 6.0'")
    return value


Gate = Annotated[str, AfterValidator(_gate)]


class RegistrySpec(Strict):
    """The approval policy of the model registry.

    ``gates`` maps a model group to metric conditions an approval must meet, e.g.
    ``[registry.gates.abalone] mse = "<= 6.0"``; only ``--override-gate "reason"`` (audited)
    approves a version that fails one.
    """

    allow_self_approval: bool = False
    #: Promotion may jump over environments (dev → prod); by default it follows their order.
    allow_environment_skip: bool = False
    gates: dict[Name, dict[str, Gate]] = Field(default_factory=dict)


def parse_gate(value: str) -> tuple[str, float]:
    match = _GATE_RE.match(value)
    assert match is not None
    return match.group(1), float(match.group(2))


class PlatformSection(Strict):
    org: Name


class DaemonSpec(Strict):
    """Where ``lockgate up`` listens for the control-plane API (the gateways use each
    environment's network policy)."""

    bind_host: IPv4Address | IPv6Address = IPv4Address("127.0.0.1")
    port: int = Field(default=19700, ge=1024, le=65535)


class PlatformSpec(Strict):
    """The whole of ``platform.toml``."""

    platform: PlatformSection
    environments: dict[Name, EnvironmentSpec] = Field(min_length=1)
    roles: dict[Name, RoleSpec] = Field(default_factory=dict)
    bindings: list[BindingSpec] = Field(default_factory=list)
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    rules: dict[Name, RuleSpec] = Field(default_factory=dict)
    daemon: DaemonSpec = Field(default_factory=DaemonSpec)
    oidc: dict[Name, OidcIssuer] = Field(default_factory=dict)

    def oidc_in(self, env: str) -> dict[str, dict[str, object]]:
        """The OIDC issuers and trusts that apply in ``env``."""
        found = {name: issuer.applied(env) for name, issuer in self.oidc.items()}
        return {name: applied for name, applied in found.items() if applied is not None}

    @model_validator(mode="after")
    def _references(self) -> Self:
        envs = list(self.environments)
        for name, issuer in self.oidc.items():
            for i, trust in enumerate(issuer.trust):
                unknown = [e for e in trust.environments if e not in self.environments]
                if unknown:
                    raise ValueError(
                        f"oidc.{name}.trust[{i}] names environment {unknown[0]!r}, which is not "
                        f"declared (declared: {', '.join(envs)})"
                    )
        for i, binding in enumerate(self.bindings):
            for env in binding.environments:
                if env not in self.environments:
                    raise ValueError(
                        f"bindings[{i}] names environment {env!r}, which is not declared "
                        f"(declared: {', '.join(envs)})"
                    )
            if binding.role not in self.roles:
                raise ValueError(
                    f"bindings[{i}] names role {binding.role!r}, which is not declared "
                    f"(declared: {', '.join(self.roles) or 'none'})"
                )
        for name in self.parameters:
            try:
                env = parameter_environment(name)
            except LockgateError as exc:
                raise ValueError(f"parameters: {name!r} is not a valid name: {PARAM_RULE}") from exc
            if env not in self.environments:
                raise ValueError(
                    f"parameters: {name!r} belongs to environment {env!r}, which is not declared"
                )
        for name, rule in self.rules.items():
            self._check_rule(name, rule)
        for env_name, env_spec in self.environments.items():
            low, high = env_spec.network.port_range
            if low <= self.daemon.port <= high:
                raise ValueError(
                    f"the daemon's port {self.daemon.port} is inside the port range of {env_name!r} "
                    f"[{low}, {high}]; move one of them"
                )
        ranges = sorted((e.network.port_range, n) for n, e in self.environments.items())
        for (a, a_name), (b, b_name) in itertools.pairwise(ranges):
            if b[0] <= a[1]:
                raise ValueError(
                    f"the port ranges of {a_name!r} {list(a)} and {b_name!r} {list(b)} overlap; "
                    "give each environment its own range"
                )
        return self

    def _check_rule(self, name: str, rule: RuleSpec) -> None:
        for env in rule.environments:
            if env not in self.environments:
                raise ValueError(
                    f"rules.{name} names environment {env!r}, which is not declared "
                    f"(declared: {', '.join(self.environments)})"
                )
        target = getattr(rule.action, "environment", None)
        if target is not None and target not in self.environments:
            raise ValueError(
                f"rules.{name} deploys to environment {target!r}, which is not declared "
                f"(declared: {', '.join(self.environments)})"
            )
        if isinstance(rule.action, WebhookAction):
            for env in self.rule_environments(rule):
                secret = rule.action.secret_parameter.replace("{env}", env)
                try:
                    owner = parameter_environment(secret)
                except LockgateError as exc:
                    raise ValueError(
                        f"rules.{name}: secret_parameter {secret!r} is not a valid parameter name: {PARAM_RULE}"
                    ) from exc
                if owner != env:
                    raise ValueError(
                        f"rules.{name}: in {env!r} the secret_parameter {secret!r} belongs to {owner!r}; "
                        "use '/lockgate/{env}/…' so each environment has its own secret"
                    )

    def rule_environments(self, rule: RuleSpec) -> list[str]:
        return list(rule.environments) or list(self.environments)

    def rules_in(self, env: str) -> dict[str, RuleSpec]:
        return {n: r for n, r in self.rules.items() if env in self.rule_environments(r)}

    def environment(self, name: str, home: str) -> EnvironmentSpec:
        """Environment ``name`` with its URLs resolved against ``home``."""
        return self.environments[name].resolved(home, name)

    def bindings_in(self, env: str) -> list[tuple[str, str]]:
        """The ``(principal, role)`` pairs bound in ``env``, sorted."""
        return sorted({(b.principal, b.role) for b in self.bindings if env in b.environments})

    def parameters_in(self, env: str) -> dict[str, ParameterSpec]:
        return {n: p for n, p in self.parameters.items() if parameter_environment(n) == env}
