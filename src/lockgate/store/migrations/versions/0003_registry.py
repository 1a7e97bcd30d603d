"""The model registry (groups, versions with approval status) and the event outbox.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_groups",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("group_name", sa.String(40), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("model_digest", sa.String(80), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("lineage", sa.Text(), nullable=False),
        sa.Column("card", sa.Text(), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("status_by", sa.String(200), nullable=True),
        sa.Column("status_at", sa.String(32), nullable=True),
        sa.Column("status_comment", sa.Text(), nullable=True),
        sa.Column("gate_override", sa.Text(), nullable=True),
        sa.Column("registered_at", sa.String(32), nullable=False),
        sa.Column("registered_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("type", sa.String(60), nullable=False, index=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("delivered_at", sa.String(32), nullable=True),
    )


def downgrade() -> None:
    for table in ("events", "model_versions", "model_groups"):
        op.drop_table(table)
