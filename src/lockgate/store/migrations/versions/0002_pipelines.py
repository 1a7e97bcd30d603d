"""Pipelines: versions, executions, step runs, lineage and cache entries.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_versions",
        sa.Column("pipeline", sa.String(40), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("definition_digest", sa.String(80), nullable=False),
        sa.Column("snapshot_digest", sa.String(80), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "executions",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("pipeline", sa.String(40), nullable=False, index=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("started_at", sa.String(32), nullable=True),
        sa.Column("finished_at", sa.String(32), nullable=True),
        sa.Column("stop_requested", sa.Boolean(), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
    )
    op.create_table(
        "step_runs",
        sa.Column("execution_id", sa.String(26), primary_key=True),
        sa.Column("step", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("cache_key", sa.String(80), nullable=True),
        sa.Column("cache_components", sa.Text(), nullable=True),
        sa.Column("cached_from", sa.String(26), nullable=True),
        sa.Column("output_type", sa.String(20), nullable=True),
        sa.Column("output_digest", sa.String(80), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("started_at", sa.String(32), nullable=True),
        sa.Column("finished_at", sa.String(32), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("handle", sa.Text(), nullable=True),
        sa.Column("not_before", sa.Float(), nullable=True),
    )
    op.create_table(
        "artifacts",
        sa.Column("digest", sa.String(80), primary_key=True),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("execution_id", sa.String(26), nullable=False, index=True),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("code_digest", sa.String(80), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "cache_entries",
        sa.Column("cache_key", sa.String(80), primary_key=True),
        sa.Column("pipeline", sa.String(40), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("output_type", sa.String(20), nullable=False),
        sa.Column("output_digest", sa.String(80), nullable=True),
        sa.Column("components", sa.Text(), nullable=False),
        sa.Column("execution_id", sa.String(26), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_cache_entries_pipeline_step", "cache_entries", ["pipeline", "step"])


def downgrade() -> None:
    op.drop_index("ix_cache_entries_pipeline_step", "cache_entries")
    for table in (
        "cache_entries",
        "artifacts",
        "step_runs",
        "executions",
        "pipeline_versions",
    ):
        op.drop_table(table)
