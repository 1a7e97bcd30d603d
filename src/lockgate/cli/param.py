"""``lockgate param``: hierarchical parameters, plain or secure."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lockgate.cli.common import (
    EnvOption,
    HomeOption,
    JsonOption,
    console,
    me,
    open_platform,
    print_json,
)
from lockgate.cli.render import table

app = typer.Typer(
    help="Put, get, list and delete parameters such as /lockgate/dev/data/bucket.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The parameter's name: /lockgate/ENV/part/…")]


def _read_value(value: str | None, secure: bool) -> str:
    if value == "-":
        return sys.stdin.read().rstrip("\n")
    if value is not None:
        return value
    if secure and sys.stdin.isatty():
        return str(typer.prompt("Value", hide_input=True, confirmation_prompt=True))
    from lockgate.errors import ValidationError

    raise ValidationError(
        "no value given.", hint="Give VALUE, or '-' to read it from standard input."
    )


@app.command()
def put(
    name: NameArg,
    value: Annotated[
        str | None,
        typer.Argument(
            help="The value; '-' reads standard input; omit with --secure to be prompted.",
            show_default=False,
        ),
    ] = None,
    secure: Annotated[
        bool, typer.Option("--secure", help="Encrypt the value at rest; hide it in output.")
    ] = False,
    description: Annotated[
        str | None, typer.Option(help="What the parameter is for.", show_default=False)
    ] = None,
    home: HomeOption = None,
) -> None:
    """Create or replace a parameter.

    Examples:

      lockgate param put /lockgate/dev/data/source s3://raw/abalone

      printf '%s' "$TOKEN" | lockgate param put /lockgate/prod/api/token - --secure
    """
    from lockgate.parameters import service

    param = service.put(
        open_platform(home),
        me(),
        name,
        _read_value(value, secure),
        secure=secure,
        description=description,
    )
    kind = "secure parameter" if param.secure else "parameter"
    console.print(f"Put {kind} {param.name} (version {param.version}).")


@app.command()
def get(
    name: NameArg,
    decrypt: Annotated[
        bool,
        typer.Option(
            "--decrypt", help="Show a secure value in clear (needs param:decrypt; audited)."
        ),
    ] = False,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Show a parameter. A secure value stays hidden unless --decrypt.

    Examples:

      lockgate param get /lockgate/dev/data/bucket

      lockgate param get /lockgate/prod/api/token --decrypt
    """
    from lockgate.parameters import service
    from lockgate.parameters.service import HIDDEN

    param = service.get(open_platform(home), me(), name, decrypt=decrypt)
    if json:
        print_json(param.to_dict())
    elif param.value is None:
        console.print(f"{HIDDEN}  (secure; pass --decrypt to show it)")
    else:
        sys.stdout.write(param.value + "\n")


@app.command("list")
def list_(
    env: EnvOption = None,
    prefix: Annotated[str, typer.Option(help="Only names starting with this.")] = "",
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """List parameters (values of secure ones are hidden).

    Examples:

      lockgate param list --env dev

      lockgate param list --prefix /lockgate/prod/ --json
    """
    from lockgate.parameters import service
    from lockgate.parameters.service import HIDDEN

    found = service.list_parameters(open_platform(home), me(), env=env, prefix=prefix)
    if json:
        print_json([p.to_dict() for p in found])
        return
    rows = [
        [
            p.name,
            "SecureString" if p.secure else "String",
            HIDDEN if p.secure else p.value,
            p.version,
            "yes" if p.managed else "no",
            p.updated_by,
        ]
        for p in found
    ]
    table(None, ["name", "type", "value", "version", "managed", "updated by"], rows)


@app.command()
def delete(name: NameArg, home: HomeOption = None) -> None:
    """Delete a parameter that platform.toml does not manage."""
    from lockgate.parameters import service

    service.delete(open_platform(home), me(), name)
    console.print(f"Deleted {name}.")
