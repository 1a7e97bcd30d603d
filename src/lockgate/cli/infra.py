"""``lockgate infra``: the platform as code."""

from __future__ import annotations

from typing import Annotated

import typer

from lockgate.cli.common import (
    HomeOption,
    JsonOption,
    confirm_or_abort,
    console,
    me,
    open_platform,
    print_json,
)
from lockgate.cli.render import change_line, render_plan, table

app = typer.Typer(
    help="Plan and apply platform.toml: environments, roles, parameters, network policy, quotas.",
    no_args_is_help=True,
)

YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking to confirm.")]


@app.command()
def plan(home: HomeOption = None, json: JsonOption = False) -> None:
    """Show what apply would change. Exits 0 with no changes, 2 with changes.

    Examples:

      lockgate infra plan

      lockgate infra plan --json | jq '.changes[].address'
    """
    from lockgate.infra import service

    the_plan = service.plan(open_platform(home), me())
    if json:
        print_json(the_plan.to_dict())
    else:
        render_plan(the_plan)
    raise typer.Exit(2 if the_plan.has_changes else 0)


def _run(home: str | None, yes: bool, *, destroy: bool = False, force: bool = False) -> None:
    from lockgate.infra import service
    from lockgate.infra.plan import Change, Plan

    verb = "destroy" if destroy else "apply"

    def confirm(the_plan: Plan) -> bool:
        render_plan(the_plan, verb=verb)
        return confirm_or_abort(f"\n{verb.capitalize()} these changes?", yes)

    def progress(change: Change) -> None:
        console.print(change_line(change, done=True))

    result = service.apply(
        open_platform(home), me(), confirm=confirm, on_change=progress, destroy=destroy, force=force
    )
    if not result.plan.has_changes:
        render_plan(result.plan, verb=verb)
        return
    version = f" State version {result.state.version}." if result.state else ""
    console.print(
        f"[green]{verb.capitalize()} complete:[/green] {len(result.applied)} change(s).{version}"
    )


@app.command()
def apply(home: HomeOption = None, yes: YesOption = False) -> None:
    """Show the plan, ask to confirm, apply it and record a new state version.

    Examples:

      lockgate infra apply

      lockgate infra apply --yes
    """
    _run(home, yes)


@app.command()
def destroy(
    home: HomeOption = None,
    yes: YesOption = False,
    force: Annotated[
        bool, typer.Option("--force", help="Also delete buckets that hold files.")
    ] = False,
) -> None:
    """Remove what apply created. Stores, keys, roles and bindings are kept.

    A bucket that holds files (it may hold models) is refused unless --force.

    Examples:

      lockgate infra destroy

      lockgate infra destroy --yes --force
    """
    _run(home, yes, destroy=True, force=force)


@app.command()
def show(home: HomeOption = None, json: JsonOption = False) -> None:
    """Show the resources of the current state version."""
    from lockgate.infra import service

    state = service.show(open_platform(home), me())
    if json:
        print_json(state.to_dict() if state else None)
        return
    if state is None:
        console.print("No state yet: run `lockgate init`.")
        return
    console.print(
        f"State version {state.version} ({state.operation}, {state.outcome}) by {state.created_by} at {state.created_at}"
    )
    rows = [
        [addr, raw["kind"], ", ".join(f"{k}={v}" for k, v in raw["attrs"].items())[:80]]
        for addr, raw in state.resources.items()
    ]
    table(None, ["resource", "kind", "attributes"], rows)


@app.command()
def history(home: HomeOption = None, json: JsonOption = False) -> None:
    """List the state versions, oldest first."""
    from lockgate.infra import service

    versions = service.history(open_platform(home), me())
    if json:
        print_json([{k: v for k, v in s.to_dict().items() if k != "resources"} for s in versions])
        return
    rows = [
        [
            s.version,
            s.created_at,
            s.created_by,
            s.operation,
            s.outcome,
            len(s.changes),
            len(s.resources),
        ]
        for s in versions
    ]
    table(None, ["version", "created", "by", "operation", "outcome", "changes", "resources"], rows)


@app.command()
def unlock(
    lock_id: Annotated[str, typer.Argument(help="The lock id, as `lockgate status` shows it.")],
    home: HomeOption = None,
) -> None:
    """Break a stale lock (one whose holder process is gone). Audited.

    Examples:

      lockgate infra unlock 01JD3Q9X0T8ZK3M6S5H7Y2B4CW
    """
    from lockgate.infra import service

    broken = service.unlock(open_platform(home), me(), lock_id)
    console.print(
        f"Broke lock {broken.id} held by {broken.holder} for '{broken.operation}' since {broken.since}."
    )
