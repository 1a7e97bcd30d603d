"""What ``lockgate ci build | deploy | test`` do, given a checkout of a project.

- **build** (the first environment): the unit tests, then the pipeline is upserted and run with
  that environment's parameters. With ``promote: pipeline`` a deploy to the next environment
  is queued after it.
- **deploy --env E**: ``promote: model`` — the newest approved version of the model group in
  the environment before E is promoted into E, served on the project's endpoint (created or
  updated, then checked by the endpoint tests) and run as a batch job, which is then scheduled;
  ``promote: pipeline`` — the pipeline is promoted into E, run on E's parameters and scheduled.
  A successful deploy queues the deploy into the next environment (which waits for its approvers).
- **test --env E**: the endpoint tests: each case is sent to the endpoint and its prediction must
  be within the tolerance of the expected value, and equal to what the registered model predicts
  for it in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockgate.auth.principal import Principal
from lockgate.config.daemon_files import running
from lockgate.errors import NotFoundError
from lockgate.parameters import projects as project_params
from lockgate.platform import Environment, Platform
from lockgate.projects import provision
from lockgate.projects.citools import CiLog, StepFailed
from lockgate.projects.manifest import ProjectConfig, inside, load

#: How long a CI step waits for an execution, an endpoint or a batch job.
WAIT_S = 1800.0


@dataclass(frozen=True)
class Context:
    platform: Platform
    principal: Principal
    root: Path
    log: CiLog
    run_id: str
    project: str
    #: The commit this run checked out; the runs it queues deploy the same one.
    commit: str | None = None
    #: What to deploy, fixed when the run was queued ({"model": "g/3"} or {"pipeline": "p@2"}).
    inputs: dict[str, str] = field(default_factory=dict)


def run(ctx: Context, kind: str, env: str) -> None:
    config = load(ctx.root)
    if config.project != ctx.project:
        raise StepFailed(f"lockgate.yaml is for project {config.project}, not {ctx.project}.")
    if env not in config.environments:
        raise StepFailed(f"{env} is not one of the project's environments {config.environments}.")
    _owned(ctx, "model_group", config.model_group)
    if config.deploy.realtime:
        _owned(ctx, "deploy.realtime.endpoint", config.deploy.realtime.endpoint)
    if kind == "build":
        build(ctx, config)
    elif kind == "deploy":
        deploy(ctx, config, env)
    else:
        test(ctx, config, env)


def _owned(ctx: Context, what: str, name: str) -> None:
    """A project's CI touches only what is named after it: NAME or NAME-…"""
    if name != ctx.project and not name.startswith(f"{ctx.project}-"):
        raise StepFailed(
            f"lockgate.yaml: {what} {name!r} is not the project's: its CI acts only on "
            f"{ctx.project} and names starting with {ctx.project}-."
        )


def _is_ci(ctx: Context, env: str) -> bool:
    """Whether this run acts as the project's CI principal (secrets go to no one else)."""
    return ctx.principal.name == provision.ci_principal(ctx.project, env)


# --- variables and secrets ----------------------------------------------------------------------


def secret_values(env: Environment, project: str) -> list[str]:
    return list(project_params.secrets(env, project).values())


# --- build ---------------------------------------------------------------------------------------


def build(ctx: Context, config: ProjectConfig) -> None:
    env = config.environments[0]
    handle = ctx.platform.ready(env)
    _unit_tests(ctx, config, handle)
    ref = _upsert(ctx, config, env)
    execution = _run_pipeline(ctx, config, env, ref)
    ctx.log.line(f"execution {execution} succeeded in {env}")
    if config.promote == "pipeline" and len(config.environments) > 1:
        _queue_next(ctx, config, env, {"pipeline": ref})


def _unit_tests(ctx: Context, config: ProjectConfig, handle: Environment) -> None:
    if not config.unit_tests:
        return
    ctx.log.section(f"unit tests ({config.unit_tests})")
    path = inside(ctx.root, config.unit_tests, "unit_tests")
    if not path.exists():
        raise StepFailed(f"unit_tests: {config.unit_tests} does not exist in the repository.")
    try:
        import pytest  # noqa: F401
    except ImportError:
        ctx.log.line("skipped: pytest is not installed where Lockgate runs (pip install pytest).")
        return
    env = {
        **os.environ,
        **(
            project_params.environment(handle, ctx.project)
            if _is_ci(ctx, handle.name)
            else project_params.variables(handle, ctx.project)
        ),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
        cwd=ctx.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    ctx.log.line((done.stdout + done.stderr).strip())
    if done.returncode != 0:
        raise StepFailed(f"the unit tests failed (pytest exit code {done.returncode}).")


def _upsert(ctx: Context, config: ProjectConfig, env: str) -> str:
    from lockgate.pipelines import service

    ctx.log.section(f"pipeline upsert {config.pipeline.file} in {env}")
    file, _, attribute = config.pipeline.file.partition(":")
    target = str(inside(ctx.root, file, "pipeline.file")) + (f":{attribute}" if attribute else "")
    from lockgate.pipelines import compiler

    name = compiler.find_pipeline(
        compiler.load_module(Path(target.partition(":")[0])), attribute or None
    ).name
    _owned(ctx, "the pipeline", str(name))
    result = service.upsert(ctx.platform, ctx.principal, target, env=env)
    ref = f"{result.version.pipeline}@{result.version.version}"
    ctx.log.line(f"{ref} ({'new version' if result.created else 'unchanged'})")
    return ref


def _run_pipeline(ctx: Context, config: ProjectConfig, env: str, ref: str) -> str:
    from lockgate.pipelines import service

    parameters = config.pipeline.parameters_for(env)
    ctx.log.section(f"pipeline run {ref} in {env} {parameters}")
    execution = service.start(
        ctx.platform,
        ctx.principal,
        ref,
        parameters,
        env=env,
        idempotency_key=f"ci:{ctx.run_id}:{env}",
        project=ctx.project if _is_ci(ctx, env) else None,
    )
    ctx.log.line(f"execution {execution.id}")
    if running(ctx.platform.home) is None:
        done = service.drive(ctx.platform, ctx.principal, execution.id, env=env)
    else:
        done = _poll(
            lambda: service.get_execution(ctx.platform, ctx.principal, execution.id, env=env),
            lambda e: e.status in ("succeeded", "failed", "stopped"),
            f"execution {execution.id}",
        )
    for line in _step_summary(ctx, env, execution.id):
        ctx.log.line(line)
    if done.status != "succeeded":
        raise StepFailed(f"execution {execution.id} of {ref} {done.status}: {done.reason}")
    return execution.id


def _step_summary(ctx: Context, env: str, execution_id: str) -> list[str]:
    from lockgate.store import pipelines as pdb

    with ctx.platform.env(env).store.read() as session:
        steps = pdb.step_runs(session, execution_id)
    return [
        f"  {name:<20} {run.status}{' — ' + run.reason if run.reason else ''}"
        for name, run in steps.items()
    ]


def _poll(read: Any, done: Any, what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        current = read()
        if done(current):
            return current
        if time.monotonic() > deadline:
            raise StepFailed(f"{what} did not finish within {timeout:.0f} s.")
        time.sleep(0.25)


def _queue_next(ctx: Context, config: ProjectConfig, env: str, inputs: dict[str, str]) -> None:
    """Queue the deploy into the environment after ``env``: the same commit, and exactly what
    this run deployed (``inputs``), never whatever is newest by then."""
    from lockgate.projects import ci

    index = config.environments.index(env)
    if index + 1 >= len(config.environments):
        return
    following = config.environments[index + 1]
    queued = ci.enqueue(
        ctx.platform,
        ctx.project,
        "deploy",
        following,
        trigger=f"after CI run {ctx.run_id}",
        key=f"after:{ctx.run_id}",
        created_by=ctx.principal.name,
        commit=ctx.commit,
        inputs=inputs,
    )
    if queued.status == "waiting":
        ctx.log.line(
            f"deploy to {following} queued as {queued.id}; it waits for one of "
            f"{', '.join(queued.approvers)}: lockgate ci approve {queued.id}"
        )
    else:
        ctx.log.line(f"deploy to {following} queued as {queued.id}")


# --- deploy --------------------------------------------------------------------------------------


def deploy(ctx: Context, config: ProjectConfig, env: str) -> None:
    index = config.environments.index(env)
    if index == 0:
        raise StepFailed(f"{env} is where the project builds: run `lockgate ci build`.")
    previous = config.environments[index - 1]
    if config.promote == "pipeline":
        deployed = {"pipeline": _deploy_pipeline(ctx, config, previous, env)}
    else:
        ref = _promote_model(ctx, config, previous, env)
        if config.deploy.realtime:
            _ensure_endpoint(ctx, config, env, ref)
            if config.endpoint_tests:
                test(ctx, config, env)
        if config.deploy.batch:
            _batch(ctx, config, env, ref)
        deployed = {"model": ref}
    _queue_next(ctx, config, env, deployed)


def _promote_model(ctx: Context, config: ProjectConfig, previous: str, env: str) -> str:
    from lockgate.registry import service as registry

    group = config.model_group
    ctx.log.section(f"promote the newest approved {group} from {previous} to {env}")
    if "model" in ctx.inputs:  # the version this run was queued for, not the newest
        _owned(ctx, "model", ctx.inputs["model"].partition("/")[0])
        source = registry.get(ctx.platform, ctx.principal, ctx.inputs["model"], env=previous)
        if source.status != registry.APPROVED:
            raise StepFailed(f"{source.ref} in {previous} is {source.status}, no longer approved.")
    else:
        try:
            found = registry.versions(ctx.platform, ctx.principal, group, env=previous)
        except NotFoundError:
            found = []
        approved = [v for v in found if v.status == registry.APPROVED]
        if not approved:
            raise StepFailed(f"{group} has no approved version in {previous}.")
        source = max(approved, key=lambda v: v.version)
    promoted = registry.promote(
        ctx.platform, ctx.principal, source.ref, to=env, source_env=previous
    )
    ctx.log.line(
        f"{previous}:{source.ref} → {env}:{promoted.ref} (digest {promoted.model_digest[:19]}…)"
    )
    return str(promoted.ref)


def _ensure_endpoint(ctx: Context, config: ProjectConfig, env: str, ref: str) -> None:
    from lockgate.serving import service as endpoints
    from lockgate.store.endpoints import FAILED, IN_SERVICE

    assert config.deploy.realtime is not None
    name = config.deploy.realtime.endpoint
    ctx.log.section(f"endpoint {name} in {env} → {ref}")
    if running(ctx.platform.home) is None:
        raise StepFailed(
            "endpoints are served by the daemon, which is not running: lockgate up --detach"
        )
    try:
        current = endpoints.get(ctx.platform, ctx.principal, name, env=env)
    except NotFoundError:
        current = None
    if current is None:
        target = endpoints.create(
            ctx.platform,
            ctx.principal,
            name,
            ref,
            instances=config.deploy.realtime.instances,
            env=env,
        )
    elif current.model_ref != ref:
        target = endpoints.update(ctx.platform, ctx.principal, name, model_ref=ref, env=env)
    else:
        target = current
    generation = target.generation

    def ready(e: Any) -> bool:
        if e.status == FAILED:
            raise StepFailed(f"endpoint {name} failed: {e.reason}")
        return bool(e.status == IN_SERVICE and (e.serving or {}).get("generation") == generation)

    found = _poll(
        lambda: endpoints.get(ctx.platform, ctx.principal, name, env=env), ready, f"endpoint {name}"
    )
    ctx.log.line(f"{name} in service: {found.model_ref}, generation {generation}")


def _batch(ctx: Context, config: ProjectConfig, env: str, ref: str) -> None:
    import fsspec

    from lockgate.pipelines import schedules
    from lockgate.serving import batch_service
    from lockgate.store.batch import FAILED, SUCCEEDED

    assert config.deploy.batch is not None
    handle = ctx.platform.env(env)
    ctx.log.section(f"batch inference with {ref} in {env}")
    location = handle.artifacts.path("projects", ctx.project, "batch")
    source = inside(ctx.root, config.deploy.batch.input, "deploy.batch.input")
    input_uri = f"{location}/input{source.suffix}"
    fs, path = fsspec.core.url_to_fs(input_uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, source.read_bytes())
    output = f"{location}/output/{ctx.run_id}"
    job = batch_service.start(ctx.platform, ctx.principal, ref, input_uri, output, env=env)
    ctx.log.line(f"job {job.id}: {job.rows} rows in {job.parts} part(s)")
    if running(ctx.platform.home) is None:
        done = batch_service.drive(ctx.platform, ctx.principal, job.id, env=env)
    else:
        done = _poll(
            lambda: batch_service.get(ctx.platform, ctx.principal, job.id, env=env),
            lambda j: j.status in (SUCCEEDED, FAILED),
            f"batch job {job.id}",
        )
    if done.status != SUCCEEDED:
        raise StepFailed(f"batch job {job.id} {done.status}: {done.error}")
    ctx.log.line(f"predictions in {output}")
    if config.deploy.batch.schedule:
        name = f"{ctx.project}-batch"
        schedules.put_batch(
            ctx.platform,
            ctx.principal,
            name,
            config.model_group,
            config.deploy.batch.schedule,
            input_uri=input_uri,
            output_uri=f"{location}/scheduled",
            env=env,
        )
        ctx.log.line(
            f"schedule {name}: {config.deploy.batch.schedule} (UTC) with the newest approved {config.model_group}"
        )


def _deploy_pipeline(ctx: Context, config: ProjectConfig, previous: str, env: str) -> str:
    from lockgate.pipelines import promotion, schedules, service

    ctx.log.section(f"promote the pipeline from {previous} to {env}")
    if "pipeline" in ctx.inputs:  # the version the run before built or deployed
        source = ctx.inputs["pipeline"]
        _owned(ctx, "pipeline", source.partition("@")[0])
    else:
        name = _pipeline_name(ctx, config, previous)
        latest = service.get_version(ctx.platform, ctx.principal, name, env=previous)
        source = f"{name}@{latest.version}"
    promoted = promotion.promote(ctx.platform, ctx.principal, source, to=env, source_env=previous)
    ref = f"{promoted.pipeline}@{promoted.version}"
    ctx.log.line(f"{previous}:{source} → {env}:{ref}")
    _run_pipeline(ctx, config, env, ref)
    if config.pipeline.schedule:
        schedule = f"{ctx.project}-train"
        schedules.put_pipeline(
            ctx.platform,
            ctx.principal,
            schedule,
            ref,
            config.pipeline.schedule,
            config.pipeline.parameters_for(env),
            env=env,
        )
        ctx.log.line(f"schedule {schedule}: {config.pipeline.schedule} (UTC) runs {ref}")
    return ref


def _pipeline_name(ctx: Context, config: ProjectConfig, env: str) -> str:
    """The name of the pipeline in ``pipeline.file`` (the one the project's build upserts)."""
    from lockgate.pipelines import compiler

    file, _, attribute = config.pipeline.file.partition(":")
    module = compiler.load_module(inside(ctx.root, file, "pipeline.file"))
    return str(compiler.find_pipeline(module, attribute or None).name)


# --- test ----------------------------------------------------------------------------------------


def test(ctx: Context, config: ProjectConfig, env: str) -> None:
    """Send each endpoint test case to the endpoint; compare with expected and with the model."""
    from lockgate.serving import service as endpoints

    if not config.endpoint_tests or not config.deploy.realtime:
        ctx.log.line("no endpoint tests (lockgate.yaml has no endpoint_tests)")
        return
    name = config.deploy.realtime.endpoint
    ctx.log.section(f"endpoint tests {config.endpoint_tests} against {name} in {env}")
    cases_file = inside(ctx.root, config.endpoint_tests, "endpoint_tests")
    try:
        doc = json.loads(cases_file.read_text())
        tolerance = float(doc.get("tolerance", 0.0))
        cases = doc["cases"]
        rows = [c["input"] for c in cases]
        expected = [float(c["expected"]) for c in cases]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StepFailed(f"{config.endpoint_tests} is not a valid test file: {exc}") from exc
    if not cases:
        raise StepFailed(f"{config.endpoint_tests} has no cases.")
    body = json.dumps(rows).encode()
    served = _predictions(endpoints.invoke(ctx.platform, ctx.principal, name, body, env=env))
    current = endpoints.get(ctx.platform, ctx.principal, name, env=env)
    own = _own_predictions(ctx, env, current.model_ref, body)
    failures = []
    for i, (got, want) in enumerate(zip(served, expected, strict=False)):
        ok = abs(got - want) <= tolerance
        same = own is None or abs(own[i] - got) <= 1e-9 * max(1.0, abs(got))
        ctx.log.line(
            f"  case {i}: endpoint {got:.4f}, expected {want:.4f} ± {tolerance}"
            + ("" if own is None else f", model {own[i]:.4f}")
            + ("  ok" if ok and same else "  FAIL")
        )
        if not ok:
            failures.append(f"case {i}: {got:.4f} is not within {tolerance} of {want}")
        if own is not None and not same:
            failures.append(f"case {i}: the endpoint answered {got}, the model predicts {own[i]}")
    if len(served) != len(expected):
        failures.append(f"{len(expected)} cases sent, {len(served)} predictions came back")
    if failures:
        raise StepFailed(f"{len(failures)} endpoint test(s) failed: " + "; ".join(failures[:5]))
    ctx.log.line(f"{len(cases)} endpoint test(s) passed")


def _predictions(answer: bytes) -> list[float]:
    doc = json.loads(answer)
    values = doc.get("predictions") if isinstance(doc, dict) else doc
    if not isinstance(values, list):
        raise StepFailed(f"the endpoint answered {answer[:200]!r}, not a list of predictions.")
    return [float(v[0] if isinstance(v, list) else v) for v in values]


def _own_predictions(ctx: Context, env: str, ref: str, body: bytes) -> list[float] | None:
    """What the registered model predicts in this process (None for a command package)."""
    import tempfile

    from lockgate.serving import formats
    from lockgate.serving.service import approved_model

    handle = ctx.platform.env(env)
    digest, manifest = approved_model(ctx.platform, ctx.principal, ref, handle)
    if manifest.format == "command":
        ctx.log.line("  (a command package serves itself: compared with the expected values only)")
        return None
    with tempfile.TemporaryDirectory(prefix="lockgate-ci-model-") as scratch:
        model_dir = handle.artifacts.get_tree(digest, Path(scratch) / "model")
        answer, _ = formats.load(model_dir).invoke(body, "application/json", "application/json")
    return _predictions(answer)
