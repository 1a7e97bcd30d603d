"""Roles and role bindings as applied to one environment."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from lockgate.store.tables import RoleBindingRow, RoleRow


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    permissions: tuple[str, ...]


def list_roles(session: Session) -> list[Role]:
    rows = session.scalars(select(RoleRow).order_by(RoleRow.name))
    return [Role(r.name, r.description, tuple(json.loads(r.permissions))) for r in rows]


def get_role(session: Session, name: str) -> Role | None:
    row = session.get(RoleRow, name)
    return (
        None if row is None else Role(row.name, row.description, tuple(json.loads(row.permissions)))
    )


def put_role(session: Session, role: Role) -> None:
    session.merge(
        RoleRow(
            name=role.name,
            description=role.description,
            permissions=json.dumps(list(role.permissions)),
        )
    )


def delete_role(session: Session, name: str) -> None:
    session.execute(delete(RoleRow).where(RoleRow.name == name))


def list_bindings(session: Session) -> list[tuple[str, str]]:
    rows = session.execute(
        select(RoleBindingRow.principal, RoleBindingRow.role).order_by(
            RoleBindingRow.principal, RoleBindingRow.role
        )
    )
    return [(p, r) for p, r in rows]


def roles_of(session: Session, principal: str) -> list[Role]:
    """The roles bound to ``principal`` (a binding to a role that no longer exists is skipped)."""
    names = session.scalars(
        select(RoleBindingRow.role).where(RoleBindingRow.principal == principal)
    )
    return [role for name in names if (role := get_role(session, name)) is not None]


def add_binding(session: Session, principal: str, role: str) -> None:
    session.merge(RoleBindingRow(principal=principal, role=role))


def delete_binding(session: Session, principal: str, role: str) -> None:
    session.execute(
        delete(RoleBindingRow).where(
            RoleBindingRow.principal == principal, RoleBindingRow.role == role
        )
    )
