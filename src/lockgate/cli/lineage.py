"""``lockgate lineage``."""

from __future__ import annotations

from typing import Annotated, Any

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


def lineage(
    artifact: Annotated[str, typer.Argument(help="An artifact digest, sha256:…")],
    env: EnvOption = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Walk an artifact's lineage: what produced it, from what, and what was made from it."""
    from rich.tree import Tree

    from lockgate.pipelines import service

    doc = service.lineage(open_platform(home), me(), artifact, env=env)
    if json:
        print_json(doc)
        return

    def branch(tree: Tree, node: dict[str, Any]) -> None:
        label = (
            f"{node['digest'][:19]} {node.get('type', '')} ← step {node['step']} of {node['execution_id']}"
            if "step" in node
            else f"{node['digest'][:19]} (not produced by a pipeline)"
        )
        sub = tree.add(f"{node.get('argument', '')}: {label}" if node.get("argument") else label)
        for parent in node.get("inputs", []):
            branch(sub, parent)

    root = Tree("lineage")
    branch(root, doc["artifact"])
    used = root.add("used by")
    for consumer in doc["used_by"]:
        used.add(
            f"{consumer['digest'][:19]} {consumer['type']} ← step {consumer['step']} of {consumer['execution_id']}"
        )
    console.print(root)
