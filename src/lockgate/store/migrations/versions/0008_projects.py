"""Projects, CI runs, scheduled batch jobs, and the project an execution runs for.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("schedules", sa.Column("batch", sa.Text(), nullable=True))
    op.add_column("executions", sa.Column("project", sa.String(40), nullable=True))
    op.create_table(
        "projects",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("template", sa.String(60), nullable=False),
        sa.Column("template_version", sa.String(40), nullable=False),
        sa.Column("repo", sa.Text(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("environments", sa.Text(), nullable=False),
        sa.Column("required_approvers", sa.Text(), nullable=False),
        sa.Column("ci_principal", sa.String(200), nullable=False),
        sa.Column("resources", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "ci_runs",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("project", sa.String(40), nullable=False, index=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("commit", sa.String(64), nullable=True),
        sa.Column("trigger", sa.String(200), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(120), nullable=True, unique=True),
        sa.Column("approvers", sa.Text(), nullable=False),
        sa.Column("approved_by", sa.String(200), nullable=True),
        sa.Column("approved_at", sa.String(32), nullable=True),
        sa.Column("run_as", sa.String(200), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("log", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("started_at", sa.String(32), nullable=True),
        sa.Column("finished_at", sa.String(32), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("ci_runs")
    op.drop_table("projects")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("batch")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("project")
