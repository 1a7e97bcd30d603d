"""Identifiers and timestamps: sortable (time-ordered) ids and UTC times."""

from __future__ import annotations

from datetime import UTC, datetime


def new_id() -> str:
    """A new ULID: 26 characters, sortable by creation time."""
    from ulid import ULID

    return str(ULID())


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """A UTC timestamp as ISO 8601 with a ``Z`` suffix, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
