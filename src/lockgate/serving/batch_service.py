"""Batch jobs as the CLI and the daemon see them: start, drive (or resume), list, show."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lockgate.auth import audit
from lockgate.auth.policy import authorize
from lockgate.auth.principal import Principal
from lockgate.errors import ConflictError, LockgateError, NotFoundError, ValidationError
from lockgate.ids import isoformat, new_id, utcnow
from lockgate.pipelines.leases import owner_id, owner_is_gone
from lockgate.platform import Environment, Platform
from lockgate.serving import batch
from lockgate.serving.service import approved_model
from lockgate.store import batch as db
from lockgate.store.batch import FAILED, PENDING, RUNNING, SUCCEEDED, BatchJob, BatchPart

#: Seconds a driver's lease lasts; it renews it every third of that.
LEASE_S = 30.0


def _environment(platform: Platform, env: str | None) -> Environment:
    return platform.ready(env)


def start(
    platform: Platform,
    principal: Principal,
    model_ref: str,
    input_uri: str,
    output_uri: str,
    *,
    workers: int = 2,
    part_rows: int = batch.PART_ROWS,
    env: str | None = None,
) -> BatchJob:
    """Record a job over approved model ``model_ref``: its input cut into parts, none done yet."""
    from lockgate.registry import service as registry

    handle = _environment(platform, env)
    authorize(handle.store, principal, "batch:run", env=handle.name, target=model_ref)
    if not 1 <= workers <= 64:
        raise ValidationError(f"workers {workers} must be between 1 and 64.")
    if not 1 <= part_rows <= 10_000_000:
        raise ValidationError(f"part_rows {part_rows} must be between 1 and 10,000,000.")
    _, manifest = approved_model(platform, principal, model_ref, handle)
    if manifest.format in ("command", "text-generation"):
        raise ValidationError(
            f"{model_ref} is a {manifest.format} package; batch jobs run sklearn and python packages.",
            hint="Serve it on an endpoint and send it the requests instead.",
        )
    version = registry.get(platform, principal, model_ref, env=handle.name)
    parts, fmt = batch.plan(input_uri, part_rows)
    fs, out = batch._fs(output_uri)
    if fs.exists(out) and fs.ls(out):
        raise ConflictError(
            f"the output {output_uri} already holds files.",
            hint="Give an empty or new folder: a job never overwrites another's results.",
        )
    job = BatchJob(
        id=new_id(),
        model_ref=version.ref,
        model_digest=version.model_digest,
        input_uri=input_uri,
        output_uri=output_uri,
        format=fmt,
        workers=workers,
        status=PENDING,
        parts=len(parts),
        rows=sum(p.rows for p in parts),
        error=None,
        lease_owner=None,
        lease_expires_at=None,
        created_at=isoformat(utcnow()),
        created_by=principal.name,
        started_at=None,
        finished_at=None,
    )
    with handle.store.transaction() as session:
        db.add_job(session, job, [(p.source, p.first_row, p.rows, p.byte_offset) for p in parts])
        audit.record(
            session,
            actor=principal.name,
            action="batch.run",
            target=job.id,
            details={"model": version.ref, "rows": job.rows, "parts": job.parts},
        )
    return job


def drive(
    platform: Platform,
    principal: Principal,
    job_id: str,
    *,
    env: str | None = None,
    on_part: Callable[[BatchPart], None] | None = None,
) -> BatchJob:
    """Run the job's unfinished parts in this process until it succeeds or fails."""
    handle = _environment(platform, env)
    authorize(handle.store, principal, "batch:run", env=handle.name, target=job_id)
    job = get(platform, principal, job_id, env=handle.name)
    if job.status in (SUCCEEDED, FAILED):
        return job
    owner = owner_id()
    gone = job.lease_owner is not None and owner_is_gone(job.lease_owner)
    with handle.store.transaction() as session:
        if not db.lease(session, job_id, owner, time.time(), LEASE_S, take_over=gone):
            raise ConflictError(
                f"batch job {job_id} is being run by {job.lease_owner}.",
                hint="Wait for it; once that process is gone its lease lapses and you can resume it.",
            )
        db.change_job(
            session, job_id, status=RUNNING, started_at=job.started_at or isoformat(utcnow())
        )
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(handle, job_id, owner, stop), daemon=True)
    renewer.start()
    try:
        with handle.store.read() as session:
            todo = [p for p in db.parts(session, job_id) if p.status != SUCCEEDED]
        with tempfile.TemporaryDirectory(prefix="lockgate-batch-") as scratch:
            model_dir = handle.artifacts.get_tree(job.model_digest, Path(scratch) / "model")

            def done(index: int, output: str, seconds: float) -> None:
                with handle.store.transaction() as session:
                    db.part_done(session, job_id, index, output, seconds)
                if on_part is not None:
                    on_part(next(p for p in todo if p.part == index))

            batch.run_parts(
                model_dir,
                [
                    (p.part, batch.PartSpec(p.source, p.first_row, p.rows, p.byte_offset))
                    for p in todo
                ],
                job.format,
                job.output_uri,
                job.workers,
                done,
            )
        _finish(handle, job, SUCCEEDED, None)
    except (LockgateError, ValueError, KeyError, OSError) as exc:
        message = exc.message if isinstance(exc, LockgateError) else f"{type(exc).__name__}: {exc}"
        _finish(handle, job, FAILED, message)
    finally:
        stop.set()
        renewer.join()
    return get(platform, principal, job_id, env=handle.name)


def _renew(handle: Environment, job_id: str, owner: str, stop: threading.Event) -> None:
    while not stop.wait(LEASE_S / 3):
        with handle.store.transaction() as session:
            db.lease(session, job_id, owner, time.time(), LEASE_S)


def _finish(handle: Environment, job: BatchJob, status: str, error: str | None) -> None:
    if status == SUCCEEDED:
        fs, folder = batch._fs(job.output_uri)
        with fs.open(f"{folder}/_SUCCESS", "w") as out:
            json.dump(
                {"job": job.id, "model": job.model_ref, "parts": job.parts, "rows": job.rows}, out
            )
    with handle.store.transaction() as session:
        db.change_job(
            session,
            job.id,
            status=status,
            error=error,
            finished_at=isoformat(utcnow()),
            lease_owner=None,
            lease_expires_at=None,
        )


def get(
    platform: Platform, principal: Principal, job_id: str, *, env: str | None = None
) -> BatchJob:
    handle = _environment(platform, env)
    authorize(handle.store, principal, "batch:read", env=handle.name, target=job_id)
    with handle.store.read() as session:
        found = db.get_job(session, job_id)
    if found is None:
        raise NotFoundError(
            f"no batch job {job_id} in {handle.name}.",
            hint=f"List them: lockgate batch list --env {handle.name}",
        )
    return found


def parts_of(
    platform: Platform, principal: Principal, job_id: str, *, env: str | None = None
) -> list[BatchPart]:
    handle = _environment(platform, env)
    get(platform, principal, job_id, env=handle.name)
    with handle.store.read() as session:
        return db.parts(session, job_id)


def list_jobs(
    platform: Platform, principal: Principal, *, env: str | None = None, limit: int = 50
) -> list[BatchJob]:
    handle = _environment(platform, env)
    authorize(handle.store, principal, "batch:read", env=handle.name, target="batch")
    with handle.store.read() as session:
        return db.list_jobs(session, limit)
