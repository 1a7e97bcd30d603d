"""Rendering of plans, states and tables for the terminal."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from lockgate.cli.common import console

if TYPE_CHECKING:
    from lockgate.infra.plan import Change, Plan

_SYMBOL = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red")}


def _value(value: Any) -> str:
    if isinstance(value, str) and value.startswith("hmac-sha256:"):
        return "(sensitive value)"
    return json.dumps(value) if value is not None else "—"


def change_line(change: Change, *, done: bool = False) -> str:
    """One line for ``change``: what will happen, or with ``done`` what happened."""
    symbol, colour = _SYMBOL[change.action]
    drift = " [dim](drift: changed outside Lockgate)[/dim]" if change.drift else ""
    action = change.action.removesuffix("e") + "ed" if done else change.action
    return f"  [{colour}]{symbol} {escape(change.address)}[/{colour}] {action}{drift}"


def render_plan(plan: Plan, *, verb: str = "apply") -> None:
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    if not plan.has_changes:
        console.print("[green]No changes.[/green] The infrastructure matches platform.toml.")
        return
    console.print(f"Lockgate will {verb} these changes:\n")
    for change in plan.changes:
        console.print(change_line(change))
        if change.action == "update":
            for attr, before, after in change.diff():
                console.print(
                    f"      {escape(attr)}: {escape(_value(before))} → {escape(_value(after))}"
                )
    counts = plan.counts()
    console.print(
        f"\nPlan: {counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete."
    )


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    out = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*[escape(str(v)) if v is not None else "—" for v in row])
    console.print(out)
