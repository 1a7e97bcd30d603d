"""``lockgate audit``: the hash-chained audit log of each environment."""

from __future__ import annotations

from typing import Annotated

import typer

from lockgate.cli.common import HomeOption, JsonOption, console, me, open_platform, print_json
from lockgate.cli.render import table

app = typer.Typer(help="List and verify the audit log of an environment.", no_args_is_help=True)

EnvArg = Annotated[str, typer.Option("--env", "-e", help="The environment.")]


@app.command("list")
def list_(
    env: EnvArg,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, help="How many of the newest events.")
    ] = 50,
    action: Annotated[
        str | None, typer.Option(help="Only this action, e.g. param.put.", show_default=False)
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="Only this principal, e.g. user:alice.", show_default=False)
    ] = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """List audit events, oldest of the selection first.

    Examples:

      lockgate audit list --env prod --limit 20

      lockgate audit list --env dev --action infra.apply --json
    """
    from lockgate.environments import audit

    events = audit.list_events(
        open_platform(home), me(), env, limit=limit, action=action, actor=actor
    )
    if json:
        print_json([e.to_dict() for e in events])
        return
    rows = [[e.seq, e.at, e.actor, e.action, e.target, e.outcome] for e in events]
    table(None, ["#", "at", "actor", "action", "target", "outcome"], rows)


@app.command()
def verify(env: EnvArg, home: HomeOption = None, json: JsonOption = False) -> None:
    """Check the whole hash chain; exits 9 at the first altered, missing or reordered event."""
    from lockgate.environments import audit
    from lockgate.errors import IntegrityError

    result = audit.verify(open_platform(home), me(), env)
    if json:
        print_json(
            {
                "ok": result.ok,
                "events": result.events,
                "broken_at": result.broken_at,
                "reason": result.reason,
            }
        )
    if not result.ok:
        raise IntegrityError(
            f"the audit log of {env} is broken: {result.reason}.",
            hint="Investigate who changed the store; restore it from a backup.",
        )
    if not json:
        console.print(
            f"[green]The audit log of {env} is intact:[/green] {result.events} events verified."
        )
