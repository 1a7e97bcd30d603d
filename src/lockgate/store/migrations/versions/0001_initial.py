"""The first schema: audit log, parameters, roles, role bindings, settings.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.Integer(), autoincrement=False, primary_key=True),
        sa.Column("id", sa.String(26), nullable=False, unique=True),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False, index=True),
        sa.Column("target", sa.String(600), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "parameters",
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("secure", sa.Boolean(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("managed", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "roles",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("permissions", sa.Text(), nullable=False),
    )
    op.create_table(
        "role_bindings",
        sa.Column("principal", sa.String(200), primary_key=True),
        sa.Column("role", sa.String(40), primary_key=True),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for table in ("settings", "role_bindings", "roles", "parameters", "audit_events"):
        op.drop_table(table)
