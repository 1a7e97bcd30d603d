"""Parameters as stored: plain values, or ciphertext for secure ones."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from lockgate.store.tables import ParameterRow


@dataclass(frozen=True)
class StoredParameter:
    """A parameter row. For a secure parameter ``value`` is ciphertext, never the clear value."""

    name: str
    secure: bool
    value: str
    description: str
    managed: bool
    version: int
    updated_at: str
    updated_by: str


def _from_row(row: ParameterRow) -> StoredParameter:
    return StoredParameter(
        row.name,
        row.secure,
        row.value,
        row.description,
        row.managed,
        row.version,
        row.updated_at,
        row.updated_by,
    )


def get_parameter(session: Session, name: str) -> StoredParameter | None:
    row = session.get(ParameterRow, name)
    return None if row is None else _from_row(row)


def list_parameters(session: Session, prefix: str = "") -> list[StoredParameter]:
    query = select(ParameterRow).order_by(ParameterRow.name)
    if prefix:
        # LIKE ignores case on SQLite; names are case-sensitive, so compare the prefix exactly too.
        query = query.where(
            ParameterRow.name.startswith(prefix, autoescape=True),
            func.substr(ParameterRow.name, 1, len(prefix)) == prefix,
        )
    return [_from_row(row) for row in session.scalars(query)]


def put_parameter(
    session: Session,
    *,
    name: str,
    secure: bool,
    value: str,
    description: str,
    managed: bool,
    at: str,
    by: str,
) -> int:
    """Create or replace a parameter; returns its new version."""
    row = session.get(ParameterRow, name)
    if row is None:
        row = ParameterRow(name=name, version=1)
        session.add(row)
    else:
        row.version += 1
    row.secure, row.value, row.description, row.managed = secure, value, description, managed
    row.updated_at, row.updated_by = at, by
    return row.version


def set_ciphertext(session: Session, name: str, value: str) -> None:
    """Replace a secure value's ciphertext (key rotation): same clear value, same version."""
    row = session.get(ParameterRow, name)
    assert row is not None and row.secure
    row.value = value


def delete_parameter(session: Session, name: str) -> bool:
    result = session.execute(delete(ParameterRow).where(ParameterRow.name == name))
    return bool(result.rowcount)  # type: ignore[attr-defined]
