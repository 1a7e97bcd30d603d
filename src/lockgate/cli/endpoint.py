"""``lockgate endpoint``: real-time endpoints (served by the daemon, `lockgate up`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lockgate.cli.common import (
    EnvOption,
    HomeOption,
    JsonOption,
    console,
    err_console,
    me,
    open_platform,
    print_json,
)
from lockgate.cli.render import table

if TYPE_CHECKING:
    from lockgate.platform import Platform
    from lockgate.store.endpoints import Endpoint

app = typer.Typer(
    help="Real-time endpoints: N instances of an approved model behind one URL.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The endpoint's name, e.g. abalone.")]
WaitOption = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Wait until it is in service (or failed).")
]
#: Seconds `--wait` waits on top of the start-up timeout.
WAIT_MARGIN_S = 30.0


def _wait(platform: Platform, name: str, env: str | None, generation: int, timeout: float) -> None:
    from lockgate.config.daemon_files import running
    from lockgate.errors import ConflictError, LockgateError
    from lockgate.serving import service
    from lockgate.store.endpoints import FAILED, IN_SERVICE

    if not running(platform.home):
        err_console.print(
            "The daemon is not running, so nothing serves yet: start it with `lockgate up --detach`."
        )
        return
    deadline = time.monotonic() + timeout
    with console.status(f"Waiting for {name} to be in service…") as spinner:
        while time.monotonic() < deadline:
            try:
                found = service.get(platform, me(), name, env=env)
            except LockgateError:
                return  # deleted meanwhile
            served = (found.serving or {}).get("generation")
            if found.status == FAILED:
                raise ConflictError(f"endpoint {name} failed: {found.reason}")
            if found.status == IN_SERVICE and served == generation:
                _summary(found)
                return
            if found.status == IN_SERVICE and found.reason and found.generation == generation:
                raise ConflictError(f"endpoint {name}: {found.reason}")
            spinner.update(f"{name}: {found.status}{' — ' + found.reason if found.reason else ''}")
            time.sleep(0.1)
    raise ConflictError(
        f"endpoint {name} is not in service after {timeout:.0f} s.",
        hint=f"See `lockgate endpoint show {name}` and `lockgate endpoint logs {name}`.",
    )


def _summary(e: Endpoint) -> None:
    url = (e.serving or {}).get("url", "")
    console.print(
        f"[green]{e.name}[/green] is {e.status}: {e.model_ref} on {e.instances} instance(s). {url}"
    )


@app.command()
def create(
    name: NameArg,
    model: Annotated[str, typer.Option("--model", "-m", help="An approved GROUP/VERSION.")],
    instances: Annotated[int, typer.Option(min=1, max=64, help="Instance processes.")] = 1,
    capture: Annotated[
        float, typer.Option(min=0, max=1, help="Share of requests to capture (0–1).")
    ] = 0.0,
    startup_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds an instance may take to answer /ping (default: the model's, 60).",
            show_default=False,
        ),
    ] = None,
    threads: Annotated[int, typer.Option(min=1, max=64, help="Numeric threads per instance.")] = 1,
    public: Annotated[
        bool,
        typer.Option(
            "--public", help="Serve without a token (default: callers need endpoint:invoke)."
        ),
    ] = False,
    wait: WaitOption = True,
    env: EnvOption = None,
    home: HomeOption = None,
) -> None:
    """Serve an approved model version on a new endpoint. Callers of the gateway need a bearer
    token with endpoint:invoke (`lockgate auth login --env ENV`) unless it is --public.

    Examples:

      lockgate endpoint create abalone --model abalone/1

      lockgate endpoint create abalone --model abalone/1 --env preprod --instances 2 --capture 0.1
    """
    from lockgate.serving import service
    from lockgate.serving.service import EndpointConfig

    platform = open_platform(home)
    config = EndpointConfig(
        capture=capture, startup_timeout_s=startup_timeout, threads=threads, public=public
    )
    created = service.create(
        platform, me(), name, model, instances=instances, config=config, env=env
    )
    console.print(f"Endpoint {name} created: {created.model_ref}, {created.instances} instance(s).")
    if wait:
        _wait(platform, name, env, created.generation, (startup_timeout or 60.0) + WAIT_MARGIN_S)


@app.command()
def update(
    name: NameArg,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Another approved GROUP/VERSION.", show_default=False),
    ] = None,
    instances: Annotated[
        int | None, typer.Option(min=1, max=64, help="Instance processes.", show_default=False)
    ] = None,
    capture: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Share of requests to capture.", show_default=False),
    ] = None,
    strategy: Annotated[
        str,
        typer.Option(
            help="How traffic moves: all-at-once, canary:PCT:BAKE_S or linear:STEP_PCT:INTERVAL_S."
        ),
    ] = "all-at-once",
    max_error_rate: Annotated[
        float,
        typer.Option(min=0, max=1, help="Roll back when the new fleet's 5xx share exceeds this."),
    ] = 0.01,
    max_p99_ms: Annotated[
        float | None,
        typer.Option(
            help="Roll back when the new fleet's p99 latency exceeds this (ms).", show_default=False
        ),
    ] = None,
    wait: WaitOption = True,
    env: EnvOption = None,
    home: HomeOption = None,
) -> None:
    """Change an endpoint's model or size. The new fleet starts beside the old one and takes
    traffic once every instance answers /ping; with a canary or linear strategy it takes a share
    first, and an alarm on its error rate or p99 latency rolls the traffic back. A fleet that
    fails to start, or is rolled back, leaves the old one serving.

    Examples:

      lockgate endpoint update abalone --model abalone/2

      lockgate endpoint update abalone --model abalone/2 --strategy canary:10:60 --max-p99-ms 50

      lockgate endpoint update abalone --model abalone/2 --strategy linear:25:30
    """
    from lockgate.serving import service
    from lockgate.serving.rollout import Alarms, parse_strategy

    platform = open_platform(home)
    config = {"capture": capture} if capture is not None else None
    changed = service.update(
        platform,
        me(),
        name,
        model_ref=model,
        instances=instances,
        config=config,
        strategy=strategy,
        alarms=Alarms(max_error_rate=max_error_rate, max_p99_ms=max_p99_ms),
        env=env,
    )
    console.print(f"Endpoint {name} updating to generation {changed.generation} ({strategy}).")
    if wait:
        baking = sum(seconds for _, seconds in parse_strategy(strategy).steps)
        timeout = float(changed.config.get("startup_timeout_s") or 60.0) + baking + WAIT_MARGIN_S
        _wait(platform, name, env, changed.generation, timeout)


@app.command("list")
def list_(env: EnvOption = None, home: HomeOption = None, json: JsonOption = False) -> None:
    """List the endpoints of an environment.

    Example: lockgate endpoint list --env preprod --json
    """
    from lockgate.remote import Remote
    from lockgate.serving import service

    remote = Remote.from_environment()
    if remote is not None:  # LOCKGATE_URL: read through the daemon's API
        from lockgate.cli.common import remote_env

        rows = remote.call("GET", f"/api/v1/environments/{remote_env(remote, env)}/endpoints")
        if json:
            print_json(rows)
            return
        table(
            None,
            ["name", "model", "instances", "status", "url", "updated"],
            [
                [
                    r["name"],
                    r["model_ref"],
                    r["instances"],
                    r["status"],
                    (r.get("serving") or {}).get("url", "—"),
                    r["updated_at"],
                ]
                for r in rows
            ],
        )
        return
    found = service.list_endpoints(open_platform(home), me(), env=env)
    if json:
        print_json([{**e.to_dict(), "url": (e.serving or {}).get("url")} for e in found])
        return
    table(
        None,
        ["name", "model", "instances", "status", "url", "updated"],
        [
            [
                e.name,
                e.model_ref,
                e.instances,
                e.status,
                (e.serving or {}).get("url", "—"),
                e.updated_at,
            ]
            for e in found
        ],
    )


@app.command()
def show(
    name: NameArg, env: EnvOption = None, home: HomeOption = None, json: JsonOption = False
) -> None:
    """Show an endpoint: model, instances, status and why it failed."""
    from lockgate.remote import Remote
    from lockgate.serving import service

    remote = Remote.from_environment()
    if remote is not None:  # LOCKGATE_URL: the API's document, as JSON
        from lockgate.cli.common import remote_env

        print_json(
            remote.call("GET", f"/api/v1/environments/{remote_env(remote, env)}/endpoints/{name}")
        )
        return
    found = service.get(open_platform(home), me(), name, env=env)
    if json:
        print_json(found.to_dict())
        return
    _summary(found)
    if found.reason:
        console.print(f"[yellow]{found.reason}[/yellow]", markup=False)
    serving = found.serving or {}
    if serving:
        table(
            f"serving generation {serving['generation']} ({serving['model_ref']}, {serving['format']})",
            ["instance", "port", "pid", "state", "restarts"],
            [
                [i["index"], i["port"], i["pid"], i["state"], i["restarts"]]
                for i in serving["instances"]
            ],
        )
    console.print(f"settings: {found.config}; created by {found.created_by} at {found.created_at}")


@app.command()
def invoke(
    name: NameArg,
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", help="The request body (JSON or CSV).", show_default=False),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="Read the body from a file ('-': stdin).", show_default=False
        ),
    ] = None,
    content_type: Annotated[str, typer.Option(help="The body's media type.")] = "application/json",
    accept: Annotated[str, typer.Option(help="The answer's media type.")] = "application/json",
    env: EnvOption = None,
    home: HomeOption = None,
) -> None:
    """Send one request to an endpoint through its environment's gateway; print the answer.

    Examples:

      lockgate endpoint invoke abalone --data '[[0.455, 0.365, 0.095, 0.514, 0.2245, 0.101, 0.15, 0, 0, 1]]'

      lockgate endpoint invoke abalone --file rows.csv --content-type text/csv --accept text/csv
    """
    from lockgate.errors import ValidationError
    from lockgate.serving import service

    if (data is None) == (file is None):
        raise ValidationError("give the body with --data or --file (one of them).")
    body = data.encode() if data is not None else _read(file)
    from lockgate.remote import Remote

    remote = Remote.from_environment()
    if remote is not None:  # LOCKGATE_URL: through the daemon's API, as the token's principal
        from lockgate.cli.common import remote_env

        answer = remote.call(
            "POST",
            f"/api/v1/environments/{remote_env(remote, env)}/endpoints/{name}/invocations",
            content=body,
            headers={"Content-Type": content_type, "Accept": accept},
        )
        import json as json_module

        text = (
            answer.decode(errors="replace")
            if isinstance(answer, bytes)
            else json_module.dumps(answer)
        )
    else:
        text = service.invoke(
            open_platform(home), me(), name, body, content_type=content_type, accept=accept, env=env
        ).decode(errors="replace")
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _read(file: Path | None) -> bytes:
    from lockgate.errors import ValidationError

    assert file is not None
    try:
        return sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read the body from {file}: {exc.strerror}.") from exc


@app.command()
def logs(
    name: NameArg,
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, max=10_000)] = 50,
    env: EnvOption = None,
    home: HomeOption = None,
) -> None:
    """Print the last lines of each instance's log (the serving generation's)."""
    from lockgate.serving import service
    from lockgate.serving.fleet import log_tail

    platform = open_platform(home)
    found = service.get(platform, me(), name, env=env)
    env_name = env or platform.env_names[0]
    generation = (found.serving or {}).get("generation", found.generation)
    folder = platform.home.run_dir / env_name / "endpoints" / name / f"g{generation}"
    paths = sorted(folder.glob("instance-*.log"))
    if not paths:
        console.print(f"No logs yet for {name} (generation {generation}).")
    for path in paths:
        console.print(f"[bold]== {path.stem} (generation {generation}) ==[/bold]")
        console.print(log_tail(path, lines), markup=False, highlight=False)


@app.command()
def delete(
    name: NameArg, wait: WaitOption = True, env: EnvOption = None, home: HomeOption = None
) -> None:
    """Delete an endpoint: its traffic stops, its instances drain, then it is gone.

    Example: lockgate endpoint delete abalone --env preprod
    """
    from lockgate.config.daemon_files import running
    from lockgate.errors import LockgateError
    from lockgate.serving import service

    platform = open_platform(home)
    service.delete(platform, me(), name, env=env)
    if not wait or not running(platform.home):
        console.print(f"Endpoint {name} marked for deletion (the daemon removes it).")
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            service.get(platform, me(), name, env=env)
        except LockgateError:
            console.print(f"Endpoint {name} deleted.")
            return
        time.sleep(0.1)
    console.print(f"Endpoint {name} is still being deleted; see `lockgate endpoint show {name}`.")
