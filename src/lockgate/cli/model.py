"""``lockgate model``: the model registry."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
from lockgate.pipelines.expressions import format_values

if TYPE_CHECKING:
    from lockgate.store.registry import ModelVersion

app = typer.Typer(help="Model groups, versions, approvals and model cards.", no_args_is_help=True)

RefArg = Annotated[str, typer.Argument(help="GROUP/VERSION, e.g. abalone/3.")]
CommentOption = Annotated[str, typer.Option("--comment", "-m", help="Why.")]


def _metrics(value: dict[str, object]) -> str:
    return format_values(value)


def _show(version: ModelVersion) -> None:
    console.print(f"[bold]{version.ref}[/bold] {version.status}  model {version.model_digest}")
    console.print(f"  registered by {version.registered_by} at {version.registered_at}")
    if version.status_by:
        comment = f": {version.status_comment}" if version.status_comment else ""
        console.print(f"  {version.status} by {version.status_by} at {version.status_at}{comment}")
    if version.gate_override:
        console.print(f"  [yellow]metric gate overridden:[/yellow] {version.gate_override}")
    console.print(f"  metrics: {_metrics(version.metrics) or 'none'}")
    lineage = version.lineage
    if "execution_id" in lineage:
        console.print(
            f"  lineage: {lineage['pipeline']} execution {lineage['execution_id']}, step {lineage['model_step']}, code {str(lineage.get('code_digest'))[:19]}"
        )


@app.command()
def groups(env: EnvOption = None, home: HomeOption = None, json: JsonOption = False) -> None:
    """List model groups."""
    from lockgate.registry import service

    found = service.groups(open_platform(home), me(), env=env)
    if json:
        print_json(found)
        return
    table(
        None,
        ["group", "versions", "created", "by"],
        [[g["name"], g["versions"], g["created_at"], g["created_by"]] for g in found],
    )


@app.command("list")
def list_(
    group: Annotated[str, typer.Argument(help="The model group.")],
    env: EnvOption = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """List a group's versions with their approval status and metrics."""
    from lockgate.registry import service
    from lockgate.remote import Remote
    from lockgate.store.registry import ModelVersion

    remote = Remote.from_environment()
    if remote is not None:  # LOCKGATE_URL: read through the daemon's API
        from lockgate.cli.common import remote_env

        rows = remote.call("GET", f"/api/v1/environments/{remote_env(remote, env)}/models/{group}")
        fields = set(ModelVersion.__dataclass_fields__)
        found = [ModelVersion(**{k: v for k, v in r.items() if k in fields}) for r in rows]
    else:
        found = service.versions(open_platform(home), me(), group, env=env)
    if json:
        print_json([v.to_dict() for v in found])
        return
    table(
        None,
        ["version", "status", "metrics", "registered", "by"],
        [
            [v.version, v.status, _metrics(v.metrics), v.registered_at, v.registered_by]
            for v in found
        ],
    )


@app.command()
def show(
    ref: RefArg, env: EnvOption = None, home: HomeOption = None, json: JsonOption = False
) -> None:
    """Show a version: artifact, status, metrics, lineage and card."""
    from lockgate.registry import service
    from lockgate.remote import Remote

    remote = Remote.from_environment()
    if remote is not None:  # LOCKGATE_URL: the API's document, as JSON
        from lockgate.cli.common import remote_env

        print_json(
            remote.call("GET", f"/api/v1/environments/{remote_env(remote, env)}/models/{ref}")
        )
        return
    version = service.get(open_platform(home), me(), ref, env=env)
    if json:
        print_json(version.to_dict())
        return
    _show(version)


@app.command()
def register(
    folder: Annotated[Path, typer.Argument(help="The model's folder (stored by content).")],
    group: Annotated[str, typer.Option("--group", "-g", help="The model group.")],
    metrics: Annotated[
        str | None, typer.Option(help="Metrics as JSON, e.g. '{\"mse\": 4.2}'.", show_default=False)
    ] = None,
    env: EnvOption = None,
    home: HomeOption = None,
) -> None:
    """Register a model folder by hand as the next version of a group (PendingManualApproval).

    Examples:

      lockgate model register ./model --group churn --metrics '{"auc": 0.91}'
    """
    from lockgate.errors import ValidationError
    from lockgate.registry import service

    try:
        parsed = jsonlib.loads(metrics) if metrics else {}
    except ValueError as exc:
        raise ValidationError(f"--metrics is not JSON: {exc}.") from None
    if not isinstance(parsed, dict):
        raise ValidationError("--metrics must be a JSON object of numbers.")
    version = service.register(open_platform(home), me(), folder, group, metrics=parsed, env=env)
    console.print(f"Registered {version.ref} ({version.status}).")


@app.command()
def approve(
    ref: RefArg,
    comment: CommentOption = "",
    override_gate: Annotated[
        str | None,
        typer.Option(
            "--override-gate",
            help="Approve despite a failed metric gate, for this reason (audited).",
            show_default=False,
        ),
    ] = None,
    env: EnvOption = None,
    home: HomeOption = None,
) -> None:
    """Approve a version (needs model:approve; not your own; metric gates apply).

    Examples:

      lockgate model approve abalone/3 -m "beats v2 on holdout"
    """
    from lockgate.registry import service
    from lockgate.remote import Remote

    remote = Remote.from_environment()
    if remote is not None:  # LOCKGATE_URL: the daemon approves, as the token's principal
        from lockgate.cli.common import remote_env

        if override_gate is not None:
            from lockgate.errors import ValidationError

            raise ValidationError("--override-gate is only for a local home.")
        group, number = service.parse_ref(ref)
        done = remote.call(
            "POST",
            f"/api/v1/environments/{remote_env(remote, env)}/models/{group}/{number}/approve",
            json={"comment": comment},
        )
        console.print(f"{done['group']}/{done['version']} is {done['status']}.")
        return
    version = service.set_status(
        open_platform(home),
        me(),
        ref,
        service.APPROVED,
        comment=comment,
        override_gate=override_gate,
        env=env,
    )
    console.print(f"{version.ref} is {version.status}.")


@app.command()
def reject(
    ref: RefArg, comment: CommentOption = "", env: EnvOption = None, home: HomeOption = None
) -> None:
    """Reject a version (pending or approved)."""
    from lockgate.registry import service

    version = service.set_status(
        open_platform(home), me(), ref, service.REJECTED, comment=comment, env=env
    )
    console.print(f"{version.ref} is {version.status}.")


@app.command()
def card(
    ref: RefArg,
    intended_use: Annotated[
        str | None, typer.Option(help="Set: what the model is for.", show_default=False)
    ] = None,
    limitations: Annotated[
        str | None, typer.Option(help="Set: where it must not be used.", show_default=False)
    ] = None,
    evaluation_summary: Annotated[
        str | None, typer.Option(help="Set: how it was evaluated.", show_default=False)
    ] = None,
    env: EnvOption = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Show a version's model card, or edit its fields with the options.

    Examples:

      lockgate model card abalone/3 --intended-use "age estimates for survey planning"
    """
    from lockgate.registry import service

    fields = {
        k: v
        for k, v in (
            ("intended_use", intended_use),
            ("limitations", limitations),
            ("evaluation_summary", evaluation_summary),
        )
        if v is not None
    }
    platform = open_platform(home)
    version = (
        service.edit_card(platform, me(), ref, fields, env=env)
        if fields
        else service.get(platform, me(), ref, env=env)
    )
    if json:
        print_json(version.card)
        return
    console.print(f"[bold]Model card {version.ref}[/bold]")
    for key in service.CARD_FIELDS:
        console.print(f"  {key.replace('_', ' ')}: {version.card.get(key) or '(empty)'}")


@app.command()
def promote(
    ref: RefArg,
    to: Annotated[str, typer.Option("--to", help="The next environment, e.g. preprod.")],
    env: Annotated[
        str | None,
        typer.Option(
            "--env", "-e", help="The source environment (default: the first).", show_default=False
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Copy an approved version into the next environment's registry (digest verified).

    Examples:

      lockgate model promote abalone/3 --to preprod

      lockgate model promote abalone/1 --env preprod --to prod
    """
    from lockgate.registry import service

    version = service.promote(open_platform(home), me(), ref, to=to, source_env=env)
    source = version.lineage["promoted_from"]
    console.print(
        f"{source['environment']}:{source['group']}/{source['version']} is {to}:{version.ref} ({version.status}), model {version.model_digest[:19]}."
    )
