"""The naming rules for everything a user types: environments, roles, buckets, parameters."""

from __future__ import annotations

import re

from lockgate.errors import ValidationError

NAME_RE = re.compile(r"^[a-z](?:[a-z0-9]|-(?=[a-z0-9])){0,39}$")
NAME_RULE = "1-40 characters: lowercase letters, digits and single hyphens, starting with a letter"

PRINCIPAL_RE = re.compile(r"^(user|service):[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$")
PRINCIPAL_RULE = "'user:LOGIN' or 'service:NAME' (letters, digits, '_', '.', '@', '-')"

PARAM_RE = re.compile(r"^/lockgate/(?P<env>[a-z][a-z0-9-]{0,39})(?:/[A-Za-z0-9_.-]+)+$")
PARAM_RULE = "'/lockgate/ENV/part/part…' (parts: letters, digits, '_', '.', '-')"


def is_name(value: str) -> bool:
    """Whether ``value`` follows the naming rule."""
    return bool(NAME_RE.match(value))


def check_name(value: str, what: str) -> str:
    """Return ``value`` if it is a valid name, else raise a :class:`ValidationError`."""
    if not is_name(value):
        raise ValidationError(
            f"{what} {value!r} is not a valid name.", hint=f"A name is {NAME_RULE}."
        )
    return value


def check_principal(value: str) -> str:
    """Return ``value`` if it is a valid principal name, else raise."""
    if not PRINCIPAL_RE.match(value):
        raise ValidationError(
            f"principal {value!r} is not valid.", hint=f"A principal is {PRINCIPAL_RULE}."
        )
    return value


def parameter_environment(name: str) -> str:
    """The environment a parameter name belongs to (``/lockgate/dev/x`` → ``dev``)."""
    match = PARAM_RE.match(name)
    if not match or ".." in name.split("/"):
        raise ValidationError(
            f"parameter name {name!r} is not valid.", hint=f"A parameter name is {PARAM_RULE}."
        )
    return match.group("env")
