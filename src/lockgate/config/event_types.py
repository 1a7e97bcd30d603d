"""The catalogue of event types: what each one means and the fields of its payload.

Automation rules name an event type and filter on payload fields, so a rule can only name what
is actually emitted: a typo is an error when ``platform.toml`` is loaded, not a rule that never
fires. Every emitter takes its type from here.
"""

from __future__ import annotations

#: type → (meaning, payload fields). A nested field is matched with a dotted path ("from.environment").
EVENT_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ModelVersionRegistered": (
        "a model version was registered (by a pipeline or by hand)",
        ("group", "version", "status", "model_digest", "by"),
    ),
    "ModelVersionApprovalChanged": (
        "a model version's approval status changed",
        ("group", "version", "from", "to", "by", "comment"),
    ),
    "ModelCardChanged": ("a model version's card was edited", ("group", "version", "fields")),
    "ModelVersionPromoted": (
        "a model version was copied into this environment from an earlier one",
        ("group", "version", "from", "by"),
    ),
    "PipelinePromoted": (
        "a pipeline version was copied into this environment from an earlier one",
        ("pipeline", "version", "from", "by"),
    ),
}

#: Fields every event offers to a rule besides its payload's.
ENVELOPE_FIELDS = ("event_id", "event_type", "subject", "environment")


def fields_of(event_type: str) -> tuple[str, ...]:
    return ENVELOPE_FIELDS + EVENT_TYPES[event_type][1]


def field_known(event_type: str, path: str) -> bool:
    """Whether ``path`` (maybe dotted) starts at a field of ``event_type``."""
    return path.split(".", 1)[0] in fields_of(event_type)
