"""Pipeline schedules (cron), with the last slot each one ran for.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("pipeline", sa.String(60), nullable=False),
        sa.Column("cron", sa.String(120), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("last_slot", sa.String(32), nullable=True),
        sa.Column("last_execution", sa.String(26), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("schedules")
