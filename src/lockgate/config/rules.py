"""Automation rules in ``platform.toml``: when an event matches, run an action.

A rule names one event type (from the catalogue), a filter on its fields and one action::

    [rules.deploy-abalone]
    event = "ModelVersionApprovalChanged"
    environments = ["dev"]                       # default: every environment
    match = { group = "abalone", to = "Approved" }
    action = { kind = "webhook", url = "http://127.0.0.1:9000/hooks/lockgate",
               secret_parameter = "/lockgate/{env}/webhook-secret" }

``match`` compares fields for equality; a list means "any of". Action strings may use the
event's fields as ``{group}``, ``{version}``, ``{from.environment}``; an unknown field is an
error here, not a delivery that fails later.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from lockgate.config.event_types import EVENT_TYPES, field_known, fields_of
from lockgate.config.fields import Name, PrincipalName, Strict

PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")

Scalar = str | int | float | bool


def _event_type(value: str) -> str:
    if value not in EVENT_TYPES:
        raise ValueError(f"unknown event type {value!r}; known: {', '.join(EVENT_TYPES)}")
    return value


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


class PipelineAction(Strict):
    """Start an execution of a pipeline in the event's environment, as ``run_as``."""

    kind: Literal["pipeline"]
    pipeline: str = Field(pattern=r"^[a-z][a-z0-9-]{0,39}(@[0-9]+)?$")
    parameters: dict[str, str] = Field(default_factory=dict)
    #: The principal the execution runs as; it needs ``pipeline:run`` in the environment.
    run_as: PrincipalName

    def templates(self) -> list[str]:
        return list(self.parameters.values())


class CommandAction(Strict):
    """Run a command (no shell); the event is on its stdin as JSON and in LOCKGATE_* variables."""

    kind: Literal["command"]
    command: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=60.0, gt=0, le=3600)

    def templates(self) -> list[str]:
        return self.command


class WebhookAction(Strict):
    """POST the event as JSON, signed with HMAC-SHA256 under a secure parameter's value."""

    kind: Literal["webhook"]
    url: Annotated[str, AfterValidator(_http_url)]
    #: A secure parameter holding the signing secret; ``{env}`` is the event's environment.
    secret_parameter: str
    timeout_s: float = Field(default=10.0, gt=0, le=300)

    def templates(self) -> list[str]:
        return [self.url]


class DeployAction(Strict):
    """Serve a model version on an endpoint: create it, or update it to that version.

    With ``environment`` other than the event's, the version is promoted there first (so
    "approved in dev → endpoint in preprod" needs no human step); ``run_as`` then needs
    ``model:approve`` and ``endpoint:write`` in that environment.
    """

    kind: Literal["deploy"]
    endpoint: Name
    model: str = "{group}/{version}"
    #: Where the endpoint lives; default the event's environment.
    environment: Name | None = None
    instances: int = Field(default=1, ge=1, le=64)
    run_as: PrincipalName

    def templates(self) -> list[str]:
        return [self.model]


class CiAction(Strict):
    """Queue a run of a project's CI (``lockgate ci deploy --env ENVIRONMENT``); the project's
    own rules use it (``lockgate project create`` writes them)."""

    kind: Literal["ci"]
    project: Name
    command: Literal["deploy"]
    environment: Name

    def templates(self) -> list[str]:
        return []


Action = Annotated[
    PipelineAction | CommandAction | WebhookAction | DeployAction | CiAction,
    Field(discriminator="kind"),
]


class RuleSpec(Strict):
    description: str = ""
    event: Annotated[str, AfterValidator(_event_type)]
    #: Where the rule applies; empty means every environment.
    environments: list[Name] = Field(default_factory=list)
    match: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    action: Action
    #: Deliveries are retried with exponential backoff (backoff_s, 2×, 4×…) up to max_attempts.
    max_attempts: int = Field(default=5, ge=1, le=50)
    backoff_s: float = Field(default=2.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _fields(self) -> Self:
        known = ", ".join(fields_of(self.event))
        for path in self.match:
            if not field_known(self.event, path):
                raise ValueError(
                    f"match field {path!r} is not a field of {self.event} (fields: {known})"
                )
        for text in self.action.templates():
            for path in PLACEHOLDER_RE.findall(text):
                if not field_known(self.event, path):
                    raise ValueError(
                        f"placeholder {{{path}}} is not a field of {self.event} (fields: {known})"
                    )
        return self
