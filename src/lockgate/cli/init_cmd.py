"""``lockgate init``."""

from __future__ import annotations

from typing import Annotated

import typer

from lockgate.cli.common import HomeOption, console, me
from lockgate.cli.render import change_line


def init(
    home: HomeOption = None,
    org: Annotated[
        str | None,
        typer.Option(help="The organisation's name (default: lockgate).", show_default=False),
    ] = None,
    environments: Annotated[
        str | None,
        typer.Option(
            help="Environments in promotion order, comma-separated (default: dev,preprod,prod).",
            show_default=False,
        ),
    ] = None,
    single_environment: Annotated[
        bool, typer.Option("--single-environment", help="One environment, 'dev'.")
    ] = False,
) -> None:
    """Create a platform home and bootstrap its environments.

    Writes platform.toml, then creates each environment's metadata store, artifact store and
    keys, and the infrastructure state with its lock. Running it again changes nothing.

    Examples:

      lockgate init --org acme

      lockgate init --home ./platform --environments dev,prod

      lockgate init --single-environment
    """
    from lockgate.config.home import Home
    from lockgate.errors import ValidationError
    from lockgate.infra.bootstrap import SINGLE_ENVIRONMENT
    from lockgate.infra.bootstrap import init as do_init

    if single_environment and environments:
        raise ValidationError(
            "--environments and --single-environment exclude each other.", hint="Give one of them."
        )
    envs = (
        SINGLE_ENVIRONMENT
        if single_environment
        else ([e.strip() for e in environments.split(",")] if environments else None)
    )
    target = Home.resolve(home)
    with console.status("Bootstrapping environments…"):
        result = do_init(target, me(), org=org, environments=envs)
    if not result.changed:
        console.print(f"Platform home {target.root} is already initialised; nothing changed.")
        return
    if result.created_home:
        console.print(
            f"Created platform home [bold]{target.root}[/bold] ({target.platform_file.name})."
        )
    for change in result.applied:
        console.print(change_line(change, done=True))
    console.print(
        "Next: review platform.toml, then `lockgate infra plan` and `lockgate infra apply`."
    )
