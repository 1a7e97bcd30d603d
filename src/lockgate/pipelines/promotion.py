"""Promoting a pipeline version (its definition and its pinned code snapshot) to the next
environment, with the guarantees of model promotion.

The snapshot is read back from the source (its digest verified), stored in the target and must
come out under the same digest; only then is the version registered in the target, with where
it came from. Promoting the same version again returns the version made the first time. In the
target the pipeline runs on that environment's own data (its parameters), never the source's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from lockgate.auth import audit
from lockgate.auth.principal import Principal
from lockgate.environments.promotion import check_promotion
from lockgate.errors import IntegrityError, LockgateError
from lockgate.ids import isoformat, utcnow
from lockgate.pipelines.service import environment, get_version
from lockgate.platform import Platform
from lockgate.store import events
from lockgate.store import pipelines as db
from lockgate.store.pipelines import PipelineVersion


def promote(
    platform: Platform,
    principal: Principal,
    ref: str,
    *,
    to: str,
    source_env: str | None = None,
) -> PipelineVersion:
    """Copy pipeline ``NAME[@VERSION]`` from ``source_env`` into environment ``to``."""
    from lockgate.registry.service import policy

    source = environment(platform, source_env)
    target = environment(platform, to)
    action_target = check_promotion(
        principal,
        platform.env_names,
        source,
        target,
        permission="pipeline:promote",
        action="pipeline.promote",
        what=ref,
        allow_skip=policy(target).allow_environment_skip,
    )
    version = get_version(platform, principal, ref, env=source.name)
    provenance = {
        "environment": source.name,
        "pipeline": version.pipeline,
        "version": version.version,
        "definition_digest": version.definition_digest,
        "snapshot_digest": version.snapshot_digest,
    }
    with target.store.read() as session:
        existing = _promoted_before(session, version.pipeline, provenance)
    if existing is not None:
        return existing
    try:
        code = source.artifacts.get_bytes(version.snapshot_digest)
    except LockgateError as exc:
        audit.record_refusal(
            target.store,
            actor=principal.name,
            action="pipeline.promote",
            target=action_target,
            reason=type(exc).__name__,
        )
        raise IntegrityError(
            f"the code snapshot of {version.pipeline}@{version.version} in {source.name} "
            f"cannot be read back intact: {exc.message}",
            hint="Nothing was copied. Upsert the pipeline again and promote the new version.",
        ) from exc
    stored = target.artifacts.put_bytes(code)
    if stored != version.snapshot_digest:
        raise IntegrityError(
            f"the copy of the snapshot in {target.name} has digest {stored}, not "
            f"{version.snapshot_digest}; nothing was registered."
        )
    with target.store.transaction() as session:
        existing = _promoted_before(session, version.pipeline, provenance)  # under the write lock
        if existing is not None:
            return existing
        latest = db.latest_version(session, version.pipeline)
        promoted = PipelineVersion(
            version.pipeline,
            (latest.version if latest else 0) + 1,
            version.definition,
            version.definition_digest,
            version.snapshot_digest,
            isoformat(utcnow()),
            principal.name,
            promoted_from=provenance,
        )
        db.add_version(session, promoted)
        events.emit(
            session,
            "PipelinePromoted",
            f"{promoted.pipeline}@{promoted.version}",
            {
                "pipeline": promoted.pipeline,
                "version": promoted.version,
                "from": provenance,
                "by": principal.name,
            },
        )
        audit.record(
            session,
            actor=principal.name,
            action="pipeline.promote",
            target=action_target,
            details={"target_version": promoted.version, "snapshot": version.snapshot_digest},
        )
    with source.store.transaction() as session:
        audit.record(
            session,
            actor=principal.name,
            action="pipeline.promote",
            target=action_target,
            details={"target_version": promoted.version},
        )
    return promoted


def _promoted_before(
    session: Session, pipeline: str, provenance: dict[str, Any]
) -> PipelineVersion | None:
    for existing in db.list_versions(session, pipeline):
        if existing.promoted_from == provenance:
            return existing
    return None
