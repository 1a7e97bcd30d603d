"""What every command shares: options, the console, opening the home, JSON output."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from lockgate.auth.principal import Principal
    from lockgate.platform import Platform

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

HomeOption = Annotated[
    str | None,
    typer.Option(
        "--home",
        help="The platform home (default: $LOCKGATE_HOME, else ~/.lockgate).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
EnvOption = Annotated[
    str | None, typer.Option("--env", "-e", help="The environment.", show_default=False)
]


def open_platform(home: str | None) -> Platform:
    from lockgate.config.home import Home
    from lockgate.platform import Platform

    return Platform.open(Home.resolve(home))


def me() -> Principal:
    from lockgate.auth.principal import local_principal

    return local_principal()


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout (no markup, safe to pipe)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def confirm_or_abort(question: str, assume_yes: bool) -> bool:
    """Ask ``question``; without a terminal, refuse unless ``--yes`` was given."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        from lockgate.errors import AbortedError

        raise AbortedError(
            "confirmation needed, but standard input is not a terminal.",
            hint="Pass --yes to confirm.",
        )
    return typer.confirm(question, default=False)


def key_values(items: list[str], what: str, example: str) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a dict; a malformed one names itself and an example."""
    from lockgate.errors import ValidationError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValidationError(
                f"{what} {item!r} is not key=value.", hint=f"For example: {example}"
            )
        out[key.strip()] = value
    return out


def remote_env(remote: Any, env: str | None) -> str:
    """The environment of the remote token (``env``, when given, must be it)."""
    from lockgate.errors import ValidationError

    token_env = str(remote.call("GET", "/api/v1/whoami")["environment"])
    if env is not None and env != token_env:
        raise ValidationError(
            f"the token is for {token_env}, not {env}.", hint=f"Get a token for {env}."
        )
    return token_env
