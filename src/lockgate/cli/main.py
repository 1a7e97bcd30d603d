"""The ``lockgate`` command line."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import typer

from lockgate import __version__
from lockgate.cli import (
    audit,
    auth,
    batch,
    ci,
    daemon,
    demo,
    endpoint,
    env,
    events,
    infra,
    lineage,
    model,
    param,
    pipeline,
    project,
    schedule,
    template,
)
from lockgate.cli.init_cmd import init
from lockgate.cli.status import status

app = typer.Typer(
    name="lockgate",
    help="Lockgate: a self-hosted, secure MLOps platform: environments as code, pipelines, a model registry with approvals, and model serving.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Start with: lockgate demo (the whole golden path), or lockgate init, then lockgate "
    "infra plan / apply, then lockgate status.",
)
app.command()(init)
app.command()(status)
app.add_typer(infra.app, name="infra")
app.add_typer(env.app, name="env")
app.add_typer(param.app, name="param")
app.add_typer(audit.app, name="audit")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(model.app, name="model")
app.add_typer(events.app, name="events")
app.add_typer(events.rules_app, name="rules")
app.command()(lineage.lineage)
app.add_typer(endpoint.app, name="endpoint")
app.add_typer(batch.app, name="batch")
app.add_typer(schedule.app, name="schedule")
app.add_typer(template.app, name="template")
app.add_typer(project.app, name="project")
app.add_typer(ci.app, name="ci")
app.add_typer(auth.app, name="auth")
app.add_typer(auth.keys_app, name="keys")
app.command()(daemon.up)
app.command()(daemon.down)
app.command()(demo.demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lockgate {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    pass


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Unwind like Ctrl-C, so locks are released and state is recorded on the way out.
    raise KeyboardInterrupt


def run() -> None:
    """Entry point: run the app, turning Lockgate errors into one clear line and an exit code."""
    from lockgate.errors import LockgateError

    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(standalone_mode=False)
    except LockgateError as exc:
        from rich.markup import escape

        from lockgate.cli.common import err_console

        err_console.print(f"[red]error:[/red] {escape(exc.message)}")
        if exc.hint:
            err_console.print(f"[dim]{escape(exc.hint)}[/dim]")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(10)
    sys.exit(code if isinstance(code, int) else 0)
