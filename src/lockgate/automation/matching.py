"""Matching an event against a rule, and filling the rule's ``{field}`` placeholders."""

from __future__ import annotations

from typing import Any

from lockgate.config.rules import PLACEHOLDER_RE
from lockgate.store.events import Event

_MISSING = object()


def fields(event: Event, environment: str) -> dict[str, Any]:
    """What a rule sees of ``event``: its payload and its envelope."""
    return {
        **event.payload,
        "event_id": event.id,
        "event_type": event.type,
        "subject": event.subject,
        "environment": environment,
    }


def lookup(values: dict[str, Any], path: str) -> Any:
    """``values[a][b]`` for ``path`` ``"a.b"``; a sentinel when any part is missing."""
    current: Any = values
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return _MISSING
        current = current[part]
    return current


def matches(rule: dict[str, Any], event: Event, environment: str) -> bool:
    """Whether the applied ``rule`` (its spec as a dict) fires on ``event``."""
    if rule["event"] != event.type:
        return False
    values = fields(event, environment)
    for path, wanted in rule.get("match", {}).items():
        actual = lookup(values, path)
        options = wanted if isinstance(wanted, list) else [wanted]
        if actual is _MISSING or not any(_equal(actual, o) for o in options):
            return False
    return True


def _equal(actual: Any, wanted: Any) -> bool:
    # TOML gives 2 for `version = 2`; a payload may hold it as 2 or "2". Booleans stay strict.
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return actual is wanted
    return actual == wanted or str(actual) == str(wanted)


def render(template: str, values: dict[str, Any]) -> str:
    """``template`` with each ``{field}`` replaced by its value (fields were checked at load)."""

    def one(match: Any) -> str:
        value = lookup(values, match.group(1))
        if value is _MISSING:
            raise KeyError(f"the event has no field {match.group(1)!r}")
        return "" if value is None else str(value)

    return PLACEHOLDER_RE.sub(one, template)
