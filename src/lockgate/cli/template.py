"""``lockgate template``: the project templates on the platform's git host."""

from __future__ import annotations

from typing import Annotated

import typer

from lockgate.cli.common import HomeOption, JsonOption, console, me, open_platform, print_json
from lockgate.cli.render import table

app = typer.Typer(
    help="Project templates (copier), versioned by tag on the platform's git host.",
    no_args_is_help=True,
)


def _home(home: str | None):  # type: ignore[no-untyped-def]
    return open_platform(home).home


@app.command("list")
def list_(home: HomeOption = None, json: JsonOption = False) -> None:
    """List the templates with their versions.

    Example:

      lockgate template list --json
    """
    from lockgate.projects import templates

    found = templates.list_templates(_home(home))
    if json:
        print_json([t.to_dict() for t in found])
        return
    table(
        None,
        ["name", "latest", "versions", "environments", "description"],
        [[t.name, t.latest, ", ".join(t.versions), t.environments, t.description] for t in found],
    )


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="The template's name.")],
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Show a template: its versions and the options `project create --option` takes.

    Example:

      lockgate template show build-train-deploy
    """
    from lockgate.projects import templates

    found = templates.get(_home(home), name)
    if json:
        print_json(found.to_dict())
        return
    console.print(f"[bold]{found.name}[/] {found.latest} — {found.description}")
    console.print(f"versions: {', '.join(found.versions)}; environments: {found.environments}")
    options = found.to_dict()["options"]
    if not options:
        console.print("options: none")
        return
    table(
        "options (--option KEY=VALUE)",
        ["option", "type", "default", "choices", "help"],
        [
            [
                key,
                spec.get("type", "str"),
                spec.get("default"),
                ", ".join(map(str, spec.get("choices", []))) or "—",
                spec.get("help", ""),
            ]
            for key, spec in options.items()
        ],
    )


@app.command()
def add(
    source: Annotated[
        str, typer.Argument(help="A folder, a git repository, or a git URL holding copier.yml.")
    ],
    name: Annotated[str | None, typer.Option("--name", help="Default: the folder's name.")] = None,
    version: Annotated[
        str | None,
        typer.Option(
            "--version", help="For a plain folder: the version it becomes (default 1.0.0)."
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Add a template, or a new version of one. A git source brings its version tags; a plain
    folder becomes --version.

    Examples:

      lockgate template add ./my-template --version 1.0.0

      lockgate template add ./my-template --version 2.0.0      # a new version

      lockgate template add /srv/git/churn-template.git
    """
    from lockgate.projects import templates

    added = templates.add(open_platform(home), me(), source, name=name, version=version)
    console.print(f"Template {added.name}: versions {', '.join(added.versions)}.")
