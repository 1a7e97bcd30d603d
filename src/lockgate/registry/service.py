"""The registry service: register, list, show, approve, reject and model cards.

The approval state machine::

    PendingManualApproval ──approve──▶ Approved ──reject──▶ Rejected
             └────────────reject────────────────────────────▲

A rejected version stays rejected (register a new one). Each change is checked against the
policy in ``platform.toml`` — the ``model:approve`` permission in the version's environment,
separation of duties (whoever registered a version may not approve it unless
``[registry] allow_self_approval``), metric gates (``[registry.gates.GROUP]``, overridable only
with a reason, which is audited) — and writes its event to the outbox in the same transaction.
"""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from lockgate.auth import audit
from lockgate.auth.policy import authorize
from lockgate.auth.principal import Principal
from lockgate.config.names import check_name
from lockgate.config.spec import RegistrySpec, parse_gate
from lockgate.environments.promotion import check_promotion
from lockgate.errors import (
    ConflictError,
    IntegrityError,
    LockgateError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from lockgate.ids import isoformat, utcnow
from lockgate.pipelines.expressions import format_values
from lockgate.platform import Environment, Platform
from lockgate.store import events, settings
from lockgate.store import registry as db
from lockgate.store.registry import ModelVersion

PENDING, APPROVED, REJECTED = "PendingManualApproval", "Approved", "Rejected"
STATUSES = (PENDING, APPROVED, REJECTED)
_ALLOWED = {(PENDING, APPROVED), (PENDING, REJECTED), (APPROVED, REJECTED)}
_COMPARE = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}
CARD_FIELDS = ("intended_use", "limitations", "evaluation_summary")


def register_version(
    session: Session,
    *,
    group: str,
    model_digest: str,
    metrics: dict[str, Any],
    lineage: dict[str, Any],
    by: str,
    status: str = PENDING,
    card: dict[str, Any] | None = None,
) -> ModelVersion:
    """Add the next version of ``group`` in the caller's transaction, with its event."""
    check_name(group, "model group")
    if status not in STATUSES:
        raise ValidationError(f"approval status {status!r} is not one of {', '.join(STATUSES)}.")
    now = isoformat(utcnow())
    db.ensure_group(session, group, now, by)
    summary = format_values(metrics)
    version = db.add_version(
        session,
        group_name=group,
        model_digest=model_digest,
        metrics=metrics,
        lineage=lineage,
        card={"intended_use": "", "limitations": "", "evaluation_summary": summary, **(card or {})},
        status=status,
        status_by=by if status != PENDING else None,
        status_at=now if status != PENDING else None,
        registered_at=now,
        registered_by=by,
    )
    events.emit(
        session,
        "ModelVersionRegistered",
        version.ref,
        {
            "group": group,
            "version": version.version,
            "status": status,
            "model_digest": model_digest,
            "by": by,
        },
    )
    return version


def parse_ref(ref: str) -> tuple[str, int]:
    group, _, version = ref.partition("/")
    if not version.isdigit():
        raise ValidationError(f"{ref!r} is not GROUP/VERSION.", hint="For example: abalone/3.")
    return check_name(group, "model group"), int(version)


def _environment(platform: Platform, env: str | None) -> Environment:
    return platform.ready(env)


def register(
    platform: Platform,
    principal: Principal,
    folder: Path,
    group: str,
    *,
    metrics: dict[str, Any] | None = None,
    env: str | None = None,
) -> ModelVersion:
    """Register the model in ``folder`` (stored by content) as the next version of ``group``."""
    handle = _environment(platform, env)
    authorize(handle.store, principal, "model:write", env=handle.name, target=group)
    check_name(group, "model group")
    if not folder.is_dir() or not any(folder.iterdir()):
        raise ValidationError(
            f"{folder} is not a folder holding a model.", hint="Pass the model's folder."
        )
    for key, value in (metrics or {}).items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValidationError(f"metric {key!r} must be a number, got {value!r}.")
    digest = handle.artifacts.put_tree(folder)
    with handle.store.transaction() as session:
        version = register_version(
            session,
            group=group,
            model_digest=digest,
            metrics=metrics or {},
            lineage={"source": "manual", "path": str(folder.resolve())},
            by=principal.name,
        )
        audit.record(
            session,
            actor=principal.name,
            action="model.register",
            target=version.ref,
            details={"digest": digest},
        )
    return version


def groups(
    platform: Platform, principal: Principal, *, env: str | None = None
) -> list[dict[str, Any]]:
    handle = _environment(platform, env)
    authorize(handle.store, principal, "model:read", env=handle.name, target="groups")
    with handle.store.transaction() as session:
        return db.list_groups(session)


def versions(
    platform: Platform, principal: Principal, group: str, *, env: str | None = None
) -> list[ModelVersion]:
    handle = _environment(platform, env)
    authorize(handle.store, principal, "model:read", env=handle.name, target=group)
    with handle.store.transaction() as session:
        found = db.list_versions(session, group)
    if not found:
        raise NotFoundError(
            f"model group {group!r} has no versions in {handle.name}.",
            hint="List groups with `lockgate model groups`.",
        )
    return found


def get(
    platform: Platform, principal: Principal, ref: str, *, env: str | None = None
) -> ModelVersion:
    handle = _environment(platform, env)
    group, number = parse_ref(ref)
    authorize(handle.store, principal, "model:read", env=handle.name, target=ref)
    with handle.store.transaction() as session:
        found = db.get_version(session, group, number)
    if found is None:
        raise NotFoundError(
            f"model version {ref} does not exist in {handle.name}.",
            hint=f"List versions with `lockgate model list {group}`.",
        )
    return found


def policy(env: Environment) -> RegistrySpec:
    """The approval policy as applied to ``env`` by ``infra apply`` (the strict default before).

    Like roles, the policy in force is the applied one: an edit to platform.toml takes effect
    through plan and apply, where it is reviewed and audited.
    """
    with env.store.transaction() as session:
        applied = settings.get_setting(session, "registry_policy")
    return RegistrySpec.model_validate(applied) if applied else RegistrySpec()


def failed_gates(rules: RegistrySpec, version: ModelVersion) -> list[str]:
    """The metric gates of ``version``'s group that it does not meet, as readable lines."""
    out = []
    for metric, gate in rules.gates.get(version.group, {}).items():
        op, bound = parse_gate(gate)
        value = version.metrics.get(metric)
        if not isinstance(value, int | float):
            out.append(f"{metric} is missing (gate {metric} {op} {bound:g})")
        elif not _COMPARE[op](value, bound):
            out.append(f"{metric} = {value:.4g} fails {metric} {op} {bound:g}")
    return out


def set_status(
    platform: Platform,
    principal: Principal,
    ref: str,
    status: str,
    *,
    comment: str = "",
    override_gate: str | None = None,
    env: str | None = None,
) -> ModelVersion:
    """Approve or reject ``ref``, after the policy checks; writes the event and the audit entry."""
    handle = _environment(platform, env)
    group, number = parse_ref(ref)
    action = "model.approve" if status == APPROVED else "model.reject"
    authorize(handle.store, principal, "model:approve", env=handle.name, target=ref)
    current = get(platform, principal, ref, env=env)
    if (current.status, status) not in _ALLOWED:
        raise ConflictError(
            f"{ref} is {current.status}; it cannot become {status}.",
            hint="A rejected version stays rejected: register a new version."
            if current.status == REJECTED
            else None,
        )
    rules = policy(handle)
    if current.registered_by == principal.name and not rules.allow_self_approval:
        _refuse(handle, principal, action, ref, "separation of duties")
        raise PermissionDeniedError(
            f"{principal} registered {ref} and so may not {'approve' if status == APPROVED else 'reject'} it "
            "(separation of duties).",
            hint="Ask another lead data scientist, or set [registry] allow_self_approval = true "
            "in platform.toml and apply it.",
        )
    failures = failed_gates(rules, current) if status == APPROVED else []
    if failures and not (override_gate and override_gate.strip()):
        _refuse(handle, principal, action, ref, "metric gate")
        raise ConflictError(
            f"{ref} fails the metric gate of group {group!r}: {'; '.join(failures)}.",
            hint='Approve anyway only with --override-gate "REASON" (audited).',
        )
    now = isoformat(utcnow())
    with handle.store.transaction() as session:
        fresh = db.get_version(session, group, number)
        assert fresh is not None
        if fresh.status != current.status:  # changed under us: re-check from the start
            raise ConflictError(f"{ref} changed to {fresh.status} meanwhile; try again.")
        db.update_version(
            session,
            group,
            number,
            status=status,
            status_by=principal.name,
            status_at=now,
            status_comment=comment or None,
            gate_override=override_gate if failures else None,
        )
        events.emit(
            session,
            "ModelVersionApprovalChanged",
            ref,
            {
                "group": group,
                "version": number,
                "from": current.status,
                "to": status,
                "by": principal.name,
                "comment": comment,
            },
        )
        details: dict[str, Any] = {"from": current.status, "to": status}
        if failures:
            details |= {"gate_overridden": failures, "reason": override_gate}
        audit.record(session, actor=principal.name, action=action, target=ref, details=details)
        updated = db.get_version(session, group, number)
    assert updated is not None
    return updated


def _refuse(handle: Environment, principal: Principal, action: str, ref: str, why: str) -> None:
    audit.record_refusal(handle.store, actor=principal.name, action=action, target=ref, reason=why)


def edit_card(
    platform: Platform,
    principal: Principal,
    ref: str,
    fields: dict[str, str],
    *,
    env: str | None = None,
) -> ModelVersion:
    """Update the model card's ``intended_use``, ``limitations`` or ``evaluation_summary``."""
    unknown = sorted(set(fields) - set(CARD_FIELDS))
    if unknown:
        raise ValidationError(
            f"unknown model card field(s): {', '.join(unknown)}.",
            hint=f"Fields: {', '.join(CARD_FIELDS)}.",
        )
    handle = _environment(platform, env)
    authorize(handle.store, principal, "model:write", env=handle.name, target=ref)
    current = get(platform, principal, ref, env=env)
    with handle.store.transaction() as session:
        db.update_version(session, current.group, current.version, card={**current.card, **fields})
        events.emit(
            session,
            "ModelCardChanged",
            ref,
            {"group": current.group, "version": current.version, "fields": sorted(fields)},
        )
        audit.record(
            session,
            actor=principal.name,
            action="model.card",
            target=ref,
            details={"fields": sorted(fields)},
        )
    return get(platform, principal, ref, env=env)


def _promoted_before(
    session: Session, group: str, provenance: dict[str, Any]
) -> ModelVersion | None:
    for existing in db.list_versions(session, group):
        if existing.lineage.get("promoted_from") == provenance:
            return existing
    return None


def promote(
    platform: Platform,
    principal: Principal,
    ref: str,
    *,
    to: str,
    source_env: str | None = None,
) -> ModelVersion:
    """Copy an approved version into the next environment's registry, as one unit.

    The bytes are read back from the source (every digest verified), stored in the target and
    must come out under the same digest; the target version records where it came from. Promoting
    the same version again returns the version made the first time.
    """
    import tempfile

    source = _environment(platform, source_env)
    target = _environment(platform, to)
    group, number = parse_ref(ref)
    action_target = check_promotion(
        principal,
        platform.env_names,
        source,
        target,
        permission="model:approve",
        action="model.promote",
        what=ref,
        allow_skip=policy(target).allow_environment_skip,
    )
    version = get(platform, principal, ref, env=source.name)
    if version.status != APPROVED:
        _refuse(target, principal, "model.promote", action_target, f"source is {version.status}")
        raise ConflictError(
            f"{ref} in {source.name} is {version.status}; only an approved version is promoted.",
            hint=f"Approve it first: lockgate model approve {ref} --env {source.name}",
        )
    provenance = {
        "environment": source.name,
        "group": group,
        "version": number,
        "model_digest": version.model_digest,
        "approved_by": version.status_by,
    }
    with target.store.transaction() as session:
        existing = _promoted_before(session, group, provenance)
    if existing is not None:
        return existing
    with tempfile.TemporaryDirectory(prefix="lockgate-promote-") as scratch:
        try:
            copied = source.artifacts.get_tree(version.model_digest, Path(scratch) / "model")
        except LockgateError as exc:
            _refuse(target, principal, "model.promote", action_target, type(exc).__name__)
            raise IntegrityError(
                f"{ref} in {source.name} cannot be read back intact: {exc.message}",
                hint="Nothing was copied. Restore the artifact, or register and approve a new version.",
            ) from exc
        digest = target.artifacts.put_tree(copied)
    if digest != version.model_digest:
        raise IntegrityError(
            f"the copy of {ref} in {target.name} has digest {digest}, not {version.model_digest}; nothing was registered."
        )
    with target.store.transaction() as session:
        # Checked again under the write lock: a concurrent promotion of the same version may
        # have registered it since (SQLite serialises writers; on PostgreSQL the loser of a race
        # on the version number fails and the caller's retry lands here).
        existing = _promoted_before(session, group, provenance)
        if existing is not None:
            return existing
        promoted = register_version(
            session,
            group=group,
            model_digest=digest,
            metrics=version.metrics,
            lineage={"promoted_from": provenance, "source_lineage": version.lineage},
            by=principal.name,
            status=APPROVED,
            card=version.card,
        )
        events.emit(
            session,
            "ModelVersionPromoted",
            promoted.ref,
            {
                "group": group,
                "version": promoted.version,
                "from": provenance,
                "by": principal.name,
            },
        )
        audit.record(
            session,
            actor=principal.name,
            action="model.promote",
            target=action_target,
            details={"target_version": promoted.version, "digest": digest},
        )
    with source.store.transaction() as session:
        audit.record(
            session,
            actor=principal.name,
            action="model.promote",
            target=action_target,
            details={"target_version": promoted.version},
        )
    return promoted
