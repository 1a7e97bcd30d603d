"""``lockgate schedule``: pipelines on cron schedules (run by the daemon)."""

from __future__ import annotations

from typing import Annotated

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
from lockgate.cli.render import table

app = typer.Typer(
    help="Pipeline runs on cron schedules (UTC), started by the daemon.", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(help="The schedule's name.")]


@app.command()
def create(
    name: NameArg,
    pipeline: Annotated[
        str, typer.Option("--pipeline", help="NAME or NAME@VERSION (NAME: the latest at each run).")
    ],
    cron: Annotated[
        str, typer.Option("--cron", help="Five cron fields in UTC, e.g. '0 6 * * *' (daily 06:00).")
    ],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value (repeatable).")
    ] = None,
    env: EnvOption = None,
    home: HomeOption = None,
) -> None:
    """Run a pipeline on a schedule. A run missed while the daemon was down runs once when it
    comes back; a run is never started twice for one slot.

    Examples:

      lockgate schedule create nightly-abalone --pipeline abalone --cron '0 2 * * *'

      lockgate schedule create batch-scores --pipeline scores@3 --cron '*/30 * * * *' --env prod -p day=today
    """
    from datetime import UTC, datetime

    from lockgate.pipelines import schedules

    created = schedules.create(
        open_platform(home),
        me(),
        name,
        pipeline,
        cron,
        key_values(param or [], "parameter", "-p max_iter=50"),
        env=env,
    )
    upcoming = schedules.next_slot(created.cron, datetime.now(UTC))
    console.print(
        f"Schedule {name}: {pipeline} at '{cron}' (UTC); next run {upcoming:%Y-%m-%d %H:%M} UTC."
    )


@app.command("list")
def list_(env: EnvOption = None, home: HomeOption = None, json: JsonOption = False) -> None:
    """List the schedules of an environment with their next and last runs."""
    from datetime import UTC, datetime

    from lockgate.pipelines import schedules

    found = schedules.list_schedules(open_platform(home), me(), env=env)
    now = datetime.now(UTC)
    if json:
        print_json(
            [
                {
                    **s.to_dict(),
                    "next_slot": None if s.paused else schedules.next_slot(s.cron, now).isoformat(),
                }
                for s in found
            ]
        )
        return
    table(
        None,
        ["name", "runs", "cron (UTC)", "state", "next run", "last run", "last execution / job"],
        [
            [
                s.name,
                f"batch job: newest approved {s.pipeline}" if s.batch else s.pipeline,
                s.cron,
                "paused" if s.paused else "active",
                "—" if s.paused else f"{schedules.next_slot(s.cron, now):%Y-%m-%d %H:%M}",
                s.last_slot or "—",
                s.last_execution or "—",
            ]
            for s in found
        ],
    )


@app.command()
def pause(name: NameArg, env: EnvOption = None, home: HomeOption = None) -> None:
    """Stop starting runs (a paused schedule does not catch up when resumed)."""
    from lockgate.pipelines import schedules

    schedules.set_paused(open_platform(home), me(), name, True, env=env)
    console.print(f"Schedule {name} paused.")


@app.command()
def resume(name: NameArg, env: EnvOption = None, home: HomeOption = None) -> None:
    """Start runs again, from the next slot."""
    from lockgate.pipelines import schedules

    schedules.set_paused(open_platform(home), me(), name, False, env=env)
    console.print(f"Schedule {name} resumed.")


@app.command()
def delete(name: NameArg, env: EnvOption = None, home: HomeOption = None) -> None:
    """Delete a schedule (its past executions stay)."""
    from lockgate.pipelines import schedules

    schedules.delete(open_platform(home), me(), name, env=env)
    console.print(f"Schedule {name} deleted.")
