"""``lockgate pipeline``: definitions, executions, logs, caching; and ``lockgate lineage``."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lockgate.cli.common import (
    EnvOption,
    HomeOption,
    JsonOption,
    console,
    key_values,
    me,
    open_platform,
    print_json,
)
from lockgate.cli.progress import continue_execution, detach_execution, drive_here
from lockgate.cli.render import table
from lockgate.pipelines.expressions import format_values

if TYPE_CHECKING:
    pass

app = typer.Typer(help="Define, run and inspect ML pipelines.", no_args_is_help=True)
cache_app = typer.Typer(help="Explain cache hits and misses.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

ExecArg = Annotated[
    str, typer.Argument(help="The execution id (see `lockgate pipeline executions`).")
]
DetachOption = Annotated[
    bool, typer.Option("--detach", "-d", help="Run in the background and return at once.")
]
ParallelOption = Annotated[
    int | None,
    typer.Option(
        "--parallel", min=1, max=256, help="Steps at once (default: CPU count).", show_default=False
    ),
]


@app.command()
def upsert(
    target: Annotated[str, typer.Argument(help="FILE or FILE:PIPELINE, e.g. pipeline.py:abalone.")],
    env: EnvOption = None,
    home: HomeOption = None,
) -> None:
    """Store a pipeline's definition and a snapshot of its project code, as a new version only
    when something changed (an unchanged upsert keeps the version and every cache entry).

    Examples:

      lockgate pipeline upsert examples/abalone/pipeline.py

      lockgate pipeline upsert pipeline.py:abalone --env preprod
    """
    from lockgate.pipelines import service

    result = service.upsert(open_platform(home), me(), target, env=env)
    v = result.version
    if result.created:
        console.print(
            f"Stored [bold]{v.pipeline}@{v.version}[/bold] ({len(v.definition['steps'])} steps, code {v.snapshot_digest[:19]})."
        )
    else:
        console.print(f"{v.pipeline}@{v.version} is unchanged; nothing stored.")


@app.command("list")
def list_(env: EnvOption = None, home: HomeOption = None, json: JsonOption = False) -> None:
    """List pipelines with their latest version."""
    from lockgate.pipelines import service
    from lockgate.remote import Remote

    remote = Remote.from_environment()
    if remote is not None:  # LOCKGATE_URL: the API's document, as JSON
        from lockgate.cli.common import remote_env

        print_json(remote.call("GET", f"/api/v1/environments/{remote_env(remote, env)}/pipelines"))
        return
    rows = service.list_pipelines(open_platform(home), me(), env=env)
    if json:
        print_json(rows)
        return
    table(
        None,
        ["pipeline", "latest", "updated", "executions"],
        [[r["name"], r["latest_version"], r["updated_at"], r["executions"]] for r in rows],
    )


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
    env: EnvOption = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Show a pipeline version: parameters and steps (--json: the whole definition)."""
    from lockgate.pipelines import service

    v = service.get_version(open_platform(home), me(), ref, env=env)
    if json:
        print_json(
            {
                "pipeline": v.pipeline,
                "version": v.version,
                "created_at": v.created_at,
                "created_by": v.created_by,
                "snapshot": v.snapshot_digest,
                "promoted_from": v.promoted_from,
                "definition": v.definition,
            }
        )
        return
    console.print(
        f"[bold]{v.pipeline}@{v.version}[/bold] by {v.created_by} at {v.created_at}; code {v.snapshot_digest}"
    )
    if v.promoted_from:
        origin = v.promoted_from
        console.print(
            f"promoted from {origin['environment']}:{origin['pipeline']}@{origin['version']}"
        )
    params = v.definition["parameters"]
    table(
        "parameters",
        ["name", "type", "default"],
        [
            [k, p["type"], "(required)" if p["required"] else p["default"]]
            for k, p in params.items()
        ],
    )
    steps = v.definition["steps"]
    table(
        "steps",
        ["step", "kind", "depends on", "output"],
        [[k, s["kind"], ", ".join(s["depends_on"]), s["output_type"]] for k, s in steps.items()],
    )


@app.command()
def diff(
    a: Annotated[str, typer.Argument(help="NAME@A")],
    b: Annotated[str, typer.Argument(help="NAME@B")],
    env: EnvOption = None,
    home: HomeOption = None,
) -> None:
    """Show what changed between two versions (a unified diff of their definitions)."""
    from lockgate.pipelines import service

    text = service.diff(open_platform(home), me(), a, b, env=env)
    sys.stdout.write(text or "The two versions are identical.\n")


@app.command()
def promote(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION (default: the latest).")],
    to: Annotated[str, typer.Option("--to", help="The next environment, e.g. preprod.")],
    env: Annotated[
        str | None,
        typer.Option(
            "--env", "-e", help="The source environment (default: the first).", show_default=False
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Copy a pipeline version and its code snapshot into the next environment (digest verified).

    In the target it runs on that environment's data. Promoting the same version again gives the
    same target version.

    Examples:

      lockgate pipeline promote abalone@3 --to preprod

      lockgate pipeline promote abalone@1 --env preprod --to prod
    """
    from lockgate.pipelines.promotion import promote as promote_pipeline

    version = promote_pipeline(open_platform(home), me(), ref, to=to, source_env=env)
    origin = version.promoted_from or {}
    console.print(
        f"{origin.get('environment')}:{origin.get('pipeline')}@{origin.get('version')} is "
        f"{to}:{version.pipeline}@{version.version}, code {version.snapshot_digest[:19]}."
    )


@app.command()
def run(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="A parameter override, key=value (repeatable).",
            show_default=False,
        ),
    ] = None,
    env: EnvOption = None,
    detach: DetachOption = False,
    parallel: ParallelOption = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Run a pipeline, showing each step's state and duration. Exits 1 if it does not succeed.

    Examples:

      lockgate pipeline run abalone

      lockgate pipeline run abalone@2 -p mse_threshold=5.5 --detach
    """
    from lockgate.pipelines import service
    from lockgate.remote import Remote

    remote = Remote.from_environment()
    if remote is not None:  # LOCKGATE_URL: the daemon runs it, as the token's principal
        _run_remote(
            remote, ref, key_values(param or [], "-p", "-p mse_threshold=5.5"), env, detach, json
        )
        return
    executor = None if detach else service.new_executor(parallel)  # warms up meanwhile
    try:
        platform = open_platform(home)
        execution = service.start(
            platform, me(), ref, key_values(param or [], "-p", "-p mse_threshold=5.5"), env=env
        )
        env_name = platform.ready(env).name
    except BaseException:
        if executor is not None:
            executor.shutdown()
        raise
    if detach:
        detach_execution(platform, execution.id, env_name)
        return
    drive_here(platform, execution.id, env_name, parallel, json, executor)


def _run_remote(
    remote: Any, ref: str, parameters: dict[str, str], env: str | None, detach: bool, json: bool
) -> None:
    from lockgate.cli.common import remote_env

    target = remote_env(remote, env)
    started = remote.call(
        "POST",
        f"/api/v1/environments/{target}/pipelines/{ref}/runs",
        json={"parameters": parameters},
    )
    console.print(
        f"Execution {started['id']} of {started['pipeline']}@{started['version']} started on {remote.url}."
    )
    if detach:
        return
    while True:
        shown = remote.call("GET", f"/api/v1/environments/{target}/executions/{started['id']}")
        if shown["status"] not in ("pending", "running"):
            break
        time.sleep(0.5)
    if json:
        print_json(shown)
    else:
        for step in shown["steps"]:
            console.print(
                f"  {step['name']:<20} {step['status']}"
                + (f" — {step['reason']}" if step.get("reason") else "")
            )
        console.print(f"Execution {shown['id']} {shown['status']}.")
    if shown["status"] != "succeeded":
        raise typer.Exit(1)


@app.command()
def resume(
    execution_id: ExecArg,
    env: EnvOption = None,
    detach: DetachOption = False,
    parallel: ParallelOption = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Pick up an execution whose orchestrator died (e.g. after kill -9)."""
    from lockgate.pipelines import service

    platform = open_platform(home)
    service.get_execution(platform, me(), execution_id, env=env)
    continue_execution(platform, execution_id, env, detach, parallel, json)


@app.command()
def retry(
    execution_id: ExecArg,
    env: EnvOption = None,
    detach: DetachOption = False,
    parallel: ParallelOption = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Re-run the failed (and skipped) steps of an execution, reusing what succeeded."""
    from lockgate.pipelines import service

    platform = open_platform(home)
    service.retry(platform, me(), execution_id, env=env)
    continue_execution(platform, execution_id, env, detach, parallel, json)


@app.command()
def stop(execution_id: ExecArg, env: EnvOption = None, home: HomeOption = None) -> None:
    """Stop an execution: running steps are cancelled, pending ones skipped."""
    from lockgate.pipelines import service

    execution = service.stop(open_platform(home), me(), execution_id, env=env)
    console.print(f"Execution {execution_id} is {execution.status}.")


@app.command()
def executions(
    pipeline: Annotated[
        str | None, typer.Argument(help="Only this pipeline.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    env: EnvOption = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """List executions, newest first."""
    from lockgate.pipelines import service

    found = service.list_executions(open_platform(home), me(), pipeline, env=env, limit=limit)
    if json:
        print_json(
            [
                {
                    k: getattr(e, k)
                    for k in (
                        "id",
                        "pipeline",
                        "version",
                        "status",
                        "reason",
                        "parameters",
                        "created_at",
                        "created_by",
                        "finished_at",
                    )
                }
                for e in found
            ]
        )
        return
    table(
        None,
        ["execution", "pipeline", "status", "created", "by", "reason"],
        [
            [
                e.id,
                f"{e.pipeline}@{e.version}",
                e.status,
                e.created_at,
                e.created_by,
                (e.reason or "")[:60],
            ]
            for e in found
        ],
    )


@app.command()
def describe(
    execution_id: ExecArg, env: EnvOption = None, home: HomeOption = None, json: JsonOption = False
) -> None:
    """Show an execution: its DAG with states, parameters, outputs, metrics and timings."""
    from lockgate.pipelines import service
    from lockgate.remote import Remote

    remote = Remote.from_environment()
    if remote is not None:  # LOCKGATE_URL: the API's document, as JSON
        from lockgate.cli.common import remote_env

        print_json(
            remote.call(
                "GET", f"/api/v1/environments/{remote_env(remote, env)}/executions/{execution_id}"
            )
        )
        return
    doc = service.describe(open_platform(home), me(), execution_id, env=env)
    if json:
        print_json(doc)
        return
    console.print(
        f"[bold]{doc['pipeline']}@{doc['version']}[/bold] · {doc['id']} · {doc['status']}{': ' + doc['reason'] if doc['reason'] else ''}"
    )
    console.print(
        f"parameters: {', '.join(f'{k}={v}' for k, v in doc['parameters'].items()) or 'none'}"
    )
    rows = []
    for s in doc["steps"]:
        output = s["output"]["digest"][:19] if s["output"] else ""
        value = s.get("value")
        shown = (
            format_values({k: v for k, v in value.items() if not isinstance(v, dict | list)})
            if isinstance(value, dict)
            else ""
        )
        seconds = f"{s['duration_s']:.2f}s" if s["duration_s"] is not None else ""
        rows.append(
            [
                s["name"],
                s["kind"],
                s["status"],
                seconds,
                ", ".join(s["depends_on"]),
                output,
                shown or (s["reason"] or ""),
            ]
        )
    table(None, ["step", "kind", "state", "time", "after", "output", "value / note"], rows)


@app.command()
def logs(
    execution_id: ExecArg,
    step: Annotated[
        str | None, typer.Argument(help="One step (default: all).", show_default=False)
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the execution ends.")
    ] = False,
    env: EnvOption = None,
    home: HomeOption = None,
) -> None:
    """Print the captured stdout and stderr of an execution's steps."""
    from lockgate.pipelines import service

    platform = open_platform(home)
    steps = (
        [step]
        if step
        else [s["name"] for s in service.describe(platform, me(), execution_id, env=env)["steps"]]
    )
    paths = {name: service.log_file(platform, me(), execution_id, name, env=env) for name in steps}
    offsets = dict.fromkeys(steps, 0)
    while True:
        for name, path in paths.items():
            if path.exists():
                with open(path, encoding="utf-8", errors="replace") as handle:
                    handle.seek(offsets[name])
                    text = handle.read()
                    offsets[name] = handle.tell()
                if text:
                    prefix = f"[{name}] " if len(paths) > 1 else ""
                    sys.stdout.write(
                        "".join(prefix + line for line in text.splitlines(keepends=True))
                    )
                    sys.stdout.flush()
        if not follow or service.get_execution(
            platform, me(), execution_id, env=env
        ).status not in ("pending", "running", "stopping"):
            break
        time.sleep(0.3)


@cache_app.command("explain")
def cache_explain(
    execution_id: ExecArg,
    step: Annotated[str, typer.Argument(help="The step.")],
    env: EnvOption = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Say why a step hit or missed the cache (which part of its key changed).

    Examples:

      lockgate pipeline cache explain 01JD3Q9X0T8ZK3M6S5H7Y2B4CW train
    """
    from lockgate.pipelines import service

    doc = service.explain_cache(open_platform(home), me(), execution_id, step, env=env)
    if json:
        print_json(doc)
        return
    console.print(f"{step}: cache [bold]{doc['result']}[/bold]")
    for line in doc["reasons"]:
        console.print(f"  - {line}", markup=False)
