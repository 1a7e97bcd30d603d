"""Field types shared by the models of ``platform.toml``."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from lockgate.config.names import NAME_RE, NAME_RULE, PRINCIPAL_RE, PRINCIPAL_RULE


def _name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a valid name: {NAME_RULE}")
    return value


def _principal(value: str) -> str:
    if not PRINCIPAL_RE.match(value):
        raise ValueError(f"{value!r} is not a valid principal: {PRINCIPAL_RULE}")
    return value


Name = Annotated[str, AfterValidator(_name)]
PrincipalName = Annotated[str, AfterValidator(_principal)]


class Strict(BaseModel):
    """A section of ``platform.toml``: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
