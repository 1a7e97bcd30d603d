"""API tokens as stored: metadata and the hash of the secret, never the secret."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lockgate.store.tables import ApiTokenRow


@dataclass(frozen=True)
class ApiToken:
    id: str
    principal: str
    name: str
    created_at: str
    created_by: str
    expires_at: float
    revoked_at: str | None = None
    revoked_by: str | None = None
    last_used_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _token(row: ApiTokenRow) -> ApiToken:
    return ApiToken(**{f: getattr(row, f) for f in ApiToken.__dataclass_fields__})


def add(session: Session, token: ApiToken, secret_hash: str) -> None:
    session.add(ApiTokenRow(**token.to_dict(), secret_hash=secret_hash))


def get_with_hash(session: Session, token_id: str) -> tuple[ApiToken, str] | None:
    row = session.get(ApiTokenRow, token_id)
    return None if row is None else (_token(row), row.secret_hash)


def list_all(session: Session, principal: str | None = None) -> list[ApiToken]:
    query = select(ApiTokenRow).order_by(ApiTokenRow.id)
    if principal:
        query = query.where(ApiTokenRow.principal == principal)
    return [_token(r) for r in session.scalars(query)]


def change(session: Session, token_id: str, **values: Any) -> None:
    session.execute(update(ApiTokenRow).where(ApiTokenRow.id == token_id).values(**values))
