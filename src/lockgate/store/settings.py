"""Per-environment settings as JSON documents (network policy, quotas)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from lockgate.store.tables import SettingRow


def get_setting(session: Session, key: str) -> dict[str, Any] | None:
    row = session.get(SettingRow, key)
    return None if row is None else dict(json.loads(row.value))


def put_setting(session: Session, key: str, value: dict[str, Any]) -> None:
    session.merge(SettingRow(key=key, value=json.dumps(value, sort_keys=True)))


def delete_setting(session: Session, key: str) -> None:
    session.execute(delete(SettingRow).where(SettingRow.key == key))
