"""``lockgate project``: self-service projects made from templates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lockgate.cli.common import (
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
    help="Projects: a repository from a template, with CI, deployment environments and their "
    "resources.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The project's name.")]


def _approvers(values: list[str]) -> dict[str, list[str]]:
    from lockgate.errors import ValidationError

    out: dict[str, list[str]] = {}
    for item in values:
        env, sep, names = item.partition("=")
        if not sep or not env:
            raise ValidationError(
                f"--approvers {item!r} is not ENV=PRINCIPAL[,PRINCIPAL…].",
                hint="For example: --approvers prod=user:alice,user:bob  (empty: prod= for none)",
            )
        out[env] = [n for n in names.split(",") if n]
    return out


@app.command()
def create(
    name: NameArg,
    template: Annotated[
        str, typer.Option("--template", "-t", help="See `lockgate template list`.")
    ],
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="KEY=VALUE (repeatable).")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="The template version (default: the latest).")
    ] = None,
    dir_: Annotated[Path | None, typer.Option("--dir", help="Clone the working copy here.")] = None,
    approvers: Annotated[
        list[str] | None,
        typer.Option(
            "--approvers",
            help="ENV=PRINCIPAL[,…]: required approvers of deploys into ENV (default: you, for "
            "the last environment).",
        ),
    ] = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Create a project: its repository from the template, and in each deployment environment
    its artifact location, CI principal, variables, model group and automation rules. A failure
    removes everything created.

    Examples:

      lockgate project create churn --template build-train-deploy --dir ./churn

      lockgate project create fraud -t build-train-deploy -o serving=realtime -o byoc=true

      lockgate project create scores -t promote-pipeline --approvers preprod=user:alice
    """
    from lockgate.projects import service

    created = service.create(
        open_platform(home),
        me(),
        name,
        template,
        options=key_values(option or [], "option", "--option serving=realtime"),
        version=version,
        checkout=dir_.absolute() if dir_ else None,
        approvers=_approvers(approvers or []),
    )
    if json:
        print_json(
            {
                **created.project.to_dict(),
                "checkout": str(created.checkout) if created.checkout else None,
                "provisioned": created.provisioned,
            }
        )
        return
    p = created.project
    console.print(f"Project {name} from {p.template} {p.template_version}.")
    console.print(f"  repository: {created.repo}")
    if created.checkout:
        console.print(f"  working copy: {created.checkout}")
    for env, addresses in created.provisioned.items():
        console.print(f"  {env}: {len(addresses)} resources ({', '.join(addresses)})")
    console.print(
        f"Push to main to build it: git -C {created.checkout or '<checkout>'} push   "
        f"(then: lockgate ci runs {name})"
    )


@app.command("list")
def list_(home: HomeOption = None, json: JsonOption = False) -> None:
    """List the projects."""
    from lockgate.projects import service

    found = service.list_projects(open_platform(home), me())
    if json:
        print_json([p.to_dict() for p in found])
        return
    table(
        None,
        ["name", "template", "version", "environments", "created by", "repository"],
        [
            [
                p.name,
                p.template,
                p.template_version,
                ", ".join(p.environments),
                p.created_by,
                p.repo,
            ]
            for p in found
        ],
    )


@app.command()
def show(name: NameArg, home: HomeOption = None, json: JsonOption = False) -> None:
    """Show a project: template, repository, and each deployment environment's protection
    rules, CI principal and resources."""
    from lockgate.projects import service

    found = service.get(open_platform(home), me(), name)
    if json:
        print_json(found)
        return
    console.print(f"[bold]{name}[/] — {found['template']} {found['template_version']}")
    console.print(f"  clone: {found['clone']}")
    table(
        "deployment environments",
        ["environment", "required approvers", "CI principal", "resources"],
        [
            [
                env,
                ", ".join(e["required_approvers"]) or "none",
                e["ci_principal"],
                len(e["resources"]),
            ]
            for env, e in found["environments"].items()
        ],
    )


@app.command()
def update(
    name: NameArg,
    to: Annotated[
        str | None, typer.Option("--to", help="The template version (default: the latest).")
    ] = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Bring a newer template version into the project: a three-way merge that keeps your
    edits. A clean merge is pushed to main (CI builds it); conflicts go to a branch for you to
    resolve. No environment resource is touched.

    Example:

      lockgate project update churn --to 2.0.0
    """
    from lockgate.projects import service

    done = service.update(open_platform(home), me(), name, to=to)
    if json:
        print_json(done.__dict__)
        return
    if not done.conflicts:
        console.print(
            f"{name}: {done.old_version} → {done.new_version}, pushed to {done.branch} "
            f"({done.commit[:12] if done.commit else ''}); CI builds it."
        )
        return
    console.print(
        f"{name}: {done.old_version} → {done.new_version} has conflicts in "
        f"{', '.join(done.conflicts)}."
    )
    console.print(
        f"They are on branch {done.branch} with conflict markers: fetch it, resolve, merge into "
        "main and push. The project stays on the old version until then."
    )
    raise typer.Exit(1)


@app.command()
def delete(
    name: NameArg,
    purge: Annotated[
        bool, typer.Option("--purge", help="Also remove the repository and the CI runs.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Delete a project's CI principal, roles, variables, rules and CI schedules. Model
    versions and endpoints stay (they may be serving); the repository stays unless --purge."""
    from lockgate.cli.common import confirm_or_abort
    from lockgate.projects import service

    if not confirm_or_abort(f"Delete project {name}?", yes):
        raise typer.Exit(1)
    done = service.delete(open_platform(home), me(), name, purge=purge)
    if json:
        print_json(done)
        return
    console.print(
        f"Project {name} deleted from {', '.join(done['environments']) or 'no environment'}."
    )
    console.print(f"  repository: {done['repo']}")
    for item in done["kept"]:
        console.print(f"  kept: {item}")


secret_app = typer.Typer(
    help="A project's secrets: encrypted at rest, given to its CI runs and pipeline steps as "
    "environment variables, masked in CI logs, never printed.",
    no_args_is_help=True,
)
app.add_typer(secret_app, name="secret")


@secret_app.command("set")
def secret_set(
    name: NameArg,
    key: Annotated[str, typer.Argument(help="The variable name, e.g. WAREHOUSE_TOKEN.")],
    value_env: Annotated[
        str | None,
        typer.Option("--value-env", help="Read the value from this environment variable."),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="Only in this environment (repeatable; default: all)."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Set a secret. The value comes from --value-env, else standard input (a prompt on a
    terminal, without echo); it is never an argument, so it stays out of shell history.

    Examples:

      lockgate project secret set churn WAREHOUSE_TOKEN --value-env TOKEN

      printf %s "$TOKEN" | lockgate project secret set churn WAREHOUSE_TOKEN --env prod
    """
    import os
    import sys

    from lockgate.errors import ValidationError
    from lockgate.projects import service

    if value_env is not None:
        value = os.environ.get(value_env)
        if value is None:
            raise ValidationError(f"environment variable {value_env} is not set.")
    elif sys.stdin.isatty():
        value = typer.prompt(f"{key}", hide_input=True)
    else:
        value = sys.stdin.read().rstrip("\n")
    envs = service.set_secret(open_platform(home), me(), name, key, value, envs=env)
    console.print(f"Secret {key} of {name} set in {', '.join(envs)} (encrypted).")


@secret_app.command("list")
def secret_list(name: NameArg, home: HomeOption = None, json: JsonOption = False) -> None:
    """List a project's secrets (names and versions, never values)."""
    from lockgate.projects import service

    found = service.list_secrets(open_platform(home), me(), name)
    if json:
        print_json(found)
        return
    table(
        None,
        ["environment", "name", "version", "updated", "by"],
        [
            [s["environment"], s["name"], s["version"], s["updated_at"], s["updated_by"]]
            for s in found
        ],
    )
