"""The ORM tables of an environment's metadata store.

Rows never leave the store layer: the modules beside this one convert them to domain objects.
The schema changes only through the Alembic migrations in ``migrations/``.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class AuditEventRow(Base):
    """One entry of the hash-chained, append-only audit log."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    id: Mapped[str] = mapped_column(String(26), unique=True)
    at: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    target: Mapped[str] = mapped_column(String(600))
    outcome: Mapped[str] = mapped_column(String(20))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ParameterRow(Base):
    __tablename__ = "parameters"

    name: Mapped[str] = mapped_column(String(512), primary_key=True)
    secure: Mapped[bool] = mapped_column(Boolean)
    value: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    managed: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[str] = mapped_column(String(32))
    updated_by: Mapped[str] = mapped_column(String(200))


class RoleRow(Base):
    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    permissions: Mapped[str] = mapped_column(Text)


class RoleBindingRow(Base):
    __tablename__ = "role_bindings"

    principal: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(40), primary_key=True)


class SettingRow(Base):
    """A JSON document per key: the network policy and the quotas of the environment."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class PipelineVersionRow(Base):
    """One stored version of a pipeline definition, with its code snapshot."""

    __tablename__ = "pipeline_versions"

    pipeline: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    definition: Mapped[str] = mapped_column(Text)
    definition_digest: Mapped[str] = mapped_column(String(80))
    snapshot_digest: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(200))
    #: Where a promoted version came from (environment, version, digests), as JSON.
    promoted_from: Mapped[str | None] = mapped_column(Text, nullable=True)


class ExecutionRow(Base):
    """A pipeline execution; claimed by one orchestrator at a time through its lease."""

    __tablename__ = "executions"
    __table_args__ = (UniqueConstraint("idempotency_key", name="uq_executions_idempotency_key"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(40), index=True)
    version: Mapped[int] = mapped_column(Integer)
    parameters: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    finished_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: Set by automation: a redelivered "start pipeline" finds the execution it started.
    idempotency_key: Mapped[str | None] = mapped_column(String(80), nullable=True)
    #: The project whose CI started it: its steps get the project's variables and secrets.
    project: Mapped[str | None] = mapped_column(String(40), nullable=True)


class StepRunRow(Base):
    """The state of one step in one execution (its latest attempt)."""

    __tablename__ = "step_runs"

    execution_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    step: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    cache_key: Mapped[str | None] = mapped_column(String(80), nullable=True)
    cache_components: Mapped[str | None] = mapped_column(Text, nullable=True)
    cached_from: Mapped[str | None] = mapped_column(String(26), nullable=True)
    output_type: Mapped[str | None] = mapped_column(String(20), nullable=True)
    output_digest: Mapped[str | None] = mapped_column(String(80), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    finished_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    handle: Mapped[str | None] = mapped_column(Text, nullable=True)
    not_before: Mapped[float | None] = mapped_column(Float, nullable=True)


class ArtifactRow(Base):
    """Lineage: which execution and step produced an artifact, from what, with which code."""

    __tablename__ = "artifacts"

    digest: Mapped[str] = mapped_column(String(80), primary_key=True)
    type: Mapped[str] = mapped_column(String(20))
    execution_id: Mapped[str] = mapped_column(String(26), index=True)
    step: Mapped[str] = mapped_column(String(64))
    inputs: Mapped[str] = mapped_column(Text)
    code_digest: Mapped[str | None] = mapped_column(String(80), nullable=True)
    created_at: Mapped[str] = mapped_column(String(32))


class CacheEntryRow(Base):
    __tablename__ = "cache_entries"
    __table_args__ = (Index("ix_cache_entries_pipeline_step", "pipeline", "step"),)

    cache_key: Mapped[str] = mapped_column(String(80), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(40))
    step: Mapped[str] = mapped_column(String(64))
    output_type: Mapped[str] = mapped_column(String(20))
    output_digest: Mapped[str | None] = mapped_column(String(80), nullable=True)
    components: Mapped[str] = mapped_column(Text)
    execution_id: Mapped[str] = mapped_column(String(26))
    created_at: Mapped[str] = mapped_column(String(32))


class ModelGroupRow(Base):
    """A model package group: the versions of one model."""

    __tablename__ = "model_groups"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(200))


class ModelVersionRow(Base):
    """One registered version of a model, with its approval status."""

    __tablename__ = "model_versions"

    group_name: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_digest: Mapped[str] = mapped_column(String(80))
    metrics: Mapped[str] = mapped_column(Text)
    lineage: Mapped[str] = mapped_column(Text)
    card: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(30))
    status_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    gate_override: Mapped[str | None] = mapped_column(Text, nullable=True)
    registered_at: Mapped[str] = mapped_column(String(32))
    registered_by: Mapped[str] = mapped_column(String(200))


class EventRow(Base):
    """The outbox: written in the same transaction as the change it describes."""

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    type: Mapped[str] = mapped_column(String(60), index=True)
    subject: Mapped[str] = mapped_column(String(200))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(32))
    #: When the worker matched it against the rules and wrote its deliveries.
    dispatched_at: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)


class RuleRow(Base):
    """An automation rule as applied by ``infra apply`` (its spec as JSON)."""

    __tablename__ = "rules"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    spec: Mapped[str] = mapped_column(Text)
    applied_at: Mapped[str] = mapped_column(String(32))
    applied_by: Mapped[str] = mapped_column(String(200))


class DeliveryRow(Base):
    """One event handed to one rule's action; claimed by a worker with a lease."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "rule", name="uq_deliveries_event_rule"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(26), index=True)
    rule: Mapped[str] = mapped_column(String(40), index=True)
    #: The rule as it was when the event was dispatched (a later edit changes later events only).
    rule_spec: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    claimed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    claim_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    history: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(32))
    finished_at: Mapped[str | None] = mapped_column(String(32), nullable=True)


class EndpointRow(Base):
    """A real-time endpoint: what should serve (model, instances, generation) and what does."""

    __tablename__ = "endpoints"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_ref: Mapped[str] = mapped_column(String(60))
    model_digest: Mapped[str] = mapped_column(String(80))
    instances: Mapped[int] = mapped_column(Integer)
    config: Mapped[str] = mapped_column(Text)
    #: Bumped by every update; the controller rolls the fleet when it differs from what serves.
    generation: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: What the controller reports (serving generation, model, instances), as JSON.
    serving: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[str] = mapped_column(String(32))
    updated_by: Mapped[str] = mapped_column(String(200))


class BatchJobRow(Base):
    """A batch inference job: a model over an input, written part by part to an output."""

    __tablename__ = "batch_jobs"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    model_ref: Mapped[str] = mapped_column(String(60))
    model_digest: Mapped[str] = mapped_column(String(80))
    input_uri: Mapped[str] = mapped_column(Text)
    output_uri: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(10))
    workers: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), index=True)
    parts: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    finished_at: Mapped[str | None] = mapped_column(String(32), nullable=True)


class BatchPartRow(Base):
    """One slice of a job's input; ``done`` once its output file is in place."""

    __tablename__ = "batch_parts"

    job_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    first_row: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)
    #: Where the part's first line starts in a CSV or JSON-lines file (None: read and slice).
    byte_offset: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)


class ScheduleRow(Base):
    """A pipeline run on a cron schedule; ``last_slot`` is the newest slot it ran for."""

    __tablename__ = "schedules"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(60))
    cron: Mapped[str] = mapped_column(String(120))
    parameters: Mapped[str] = mapped_column(Text)
    paused: Mapped[bool] = mapped_column(Boolean)
    last_slot: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_execution: Mapped[str | None] = mapped_column(String(26), nullable=True)
    created_at: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(200))
    #: For a scheduled batch job: {"group", "input", "output"} as JSON (then ``pipeline`` is unused).
    batch: Mapped[str | None] = mapped_column(Text, nullable=True)


class ProjectRow(Base):
    """A project's footprint in this environment: its template, repository and protection rules."""

    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    template: Mapped[str] = mapped_column(String(60))
    template_version: Mapped[str] = mapped_column(String(40))
    repo: Mapped[str] = mapped_column(Text)
    options: Mapped[str] = mapped_column(Text)
    #: The project's deployment environments, in order (JSON list).
    environments: Mapped[str] = mapped_column(Text)
    #: Who must approve a CI deploy into this environment (JSON list; empty: no approval).
    required_approvers: Mapped[str] = mapped_column(Text)
    ci_principal: Mapped[str] = mapped_column(String(200))
    #: What provisioning created here, so delete removes exactly that (JSON list of addresses).
    resources: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[str] = mapped_column(String(32))


class CiRunRow(Base):
    """One CI run (build, deploy or test) of a project in this environment; claimed with a lease."""

    __tablename__ = "ci_runs"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    project: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    trigger: Mapped[str] = mapped_column(String(200))
    #: What to deploy, fixed when the run was queued: {"model": "g/3"} or {"pipeline": "p@2"}.
    inputs: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: A rule delivery or a parent run: the same key never queues two runs.
    idempotency_key: Mapped[str | None] = mapped_column(String(120), nullable=True, unique=True)
    approvers: Mapped[str] = mapped_column(Text)
    approved_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    approved_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    run_as: Mapped[str] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    log: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    finished_at: Mapped[str | None] = mapped_column(String(32), nullable=True)


class ApiTokenRow(Base):
    """A long-lived token for automation: only the SHA-256 of its secret is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    principal: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    last_used_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
