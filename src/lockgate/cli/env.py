"""``lockgate env``: the environments."""

from __future__ import annotations

from typing import Annotated

import typer

from lockgate.cli.common import HomeOption, JsonOption, console, me, open_platform, print_json
from lockgate.cli.render import table

app = typer.Typer(help="List and inspect environments.", no_args_is_help=True)


@app.command("list")
def list_(home: HomeOption = None, json: JsonOption = False) -> None:
    """List environments in promotion order."""
    from lockgate.environments import service

    envs = service.list_environments(open_platform(home), me())
    if json:
        print_json([e.to_dict() for e in envs])
        return
    rows = [
        [e.position, e.name, "ready" if e.ready else "not ready", e.metadata_url, e.artifact_url]
        for e in envs
    ]
    table(None, ["#", "environment", "state", "metadata store", "artifact store"], rows)


@app.command()
def show(
    env: Annotated[str, typer.Argument(help="The environment's name.")],
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Show an environment: stores, keys, buckets, network policy, quotas, roles and bindings.

    Examples:

      lockgate env show prod

      lockgate env show dev --json
    """
    from lockgate.environments import service

    doc = service.show_environment(open_platform(home), me(), env)
    if json:
        print_json(doc)
        return
    net, quotas = doc["network"], doc["quotas"]
    console.print(
        f"[bold]{doc['name']}[/bold] (#{doc['position']}, {'ready' if doc['ready'] else 'not ready'})"
    )
    console.print(f"  metadata store  {doc['metadata_url']} (schema {doc['schema'] or 'none'})")
    console.print(
        f"  artifact store  {doc['artifact_url']} ({'present' if doc['artifacts_ok'] else 'missing'})"
    )
    console.print(f"  keys            {', '.join(f'{k}: {v}' for k, v in doc['keys'].items())}")
    console.print(
        f"  buckets         {', '.join(f'{b}' + ('' if ok else ' (missing)') for b, ok in doc['buckets'].items())}"
    )
    console.print(
        f"  network         bind {net['bind_host']}, ports {net['port_range'][0]}-{net['port_range'][1]}, clients {', '.join(net['allowed_clients'])}"
    )
    console.print(
        f"  quotas          {quotas['max_endpoints']} endpoints, {quotas['max_instances']} instances"
    )
    if "bindings" in doc:
        console.print(
            f"  parameters      {doc['parameters']}    audit events  {doc['audit_events']}"
        )
        table(
            "bindings",
            ["principal", "role"],
            [[b["principal"], b["role"]] for b in doc["bindings"]],
        )
