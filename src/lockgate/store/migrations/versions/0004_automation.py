"""Automation: applied rules, per-rule deliveries of events, idempotent pipeline starts; the
provenance of promoted pipeline versions.

An event is *dispatched* when the worker has matched it against the rules and written one
delivery per matching rule, all in one transaction. Deliveries are then claimed with a lease.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.alter_column("delivered_at", new_column_name="dispatched_at")
    op.create_index("ix_events_dispatched_at", "events", ["dispatched_at"])
    with op.batch_alter_table("pipeline_versions") as batch:
        batch.add_column(sa.Column("promoted_from", sa.Text(), nullable=True))
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(80), nullable=True))
        batch.create_unique_constraint("uq_executions_idempotency_key", ["idempotency_key"])
    op.create_table(
        "rules",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("applied_at", sa.String(32), nullable=False),
        sa.Column("applied_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("event_id", sa.String(26), nullable=False, index=True),
        sa.Column("rule", sa.String(40), nullable=False, index=True),
        sa.Column("rule_spec", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("claim_expires_at", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("history", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("finished_at", sa.String(32), nullable=True),
        sa.UniqueConstraint("event_id", "rule", name="uq_deliveries_event_rule"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_due", "deliveries")
    op.drop_table("deliveries")
    op.drop_table("rules")
    with op.batch_alter_table("executions") as batch:
        batch.drop_constraint("uq_executions_idempotency_key", type_="unique")
        batch.drop_column("idempotency_key")
    op.drop_index("ix_events_dispatched_at", "events")
    with op.batch_alter_table("events") as batch:
        batch.alter_column("dispatched_at", new_column_name="delivered_at")
    with op.batch_alter_table("pipeline_versions") as batch:
        batch.drop_column("promoted_from")
