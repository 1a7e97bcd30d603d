"""``lockgate events``: the outbox, deliveries and the worker; ``lockgate rules``."""

from __future__ import annotations

import json as jsonlib
import threading
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

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

if TYPE_CHECKING:
    from lockgate.automation.worker import Report
    from lockgate.store.automation import Delivery

app = typer.Typer(
    help="The event outbox (every state change, in order), its deliveries to rules, and the worker.",
    no_args_is_help=True,
)
rules_app = typer.Typer(
    help="Automation rules (declared in platform.toml under [rules.NAME], applied by `infra apply`).",
    no_args_is_help=True,
)

DeliveryArg = Annotated[
    str, typer.Argument(help="A delivery id (see `lockgate events deliveries`).")
]
_STYLE = {"succeeded": "green", "failed": "red", "running": "yellow", "pending": "dim"}


@app.command("list")
def list_(
    type_: Annotated[
        str | None, typer.Option("--type", help="Only this event type.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    env: EnvOption = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """List events, oldest of the selection first.

    Example: lockgate events list --type ModelVersionApprovalChanged --env dev
    """
    from lockgate.automation import service

    found = service.list_events(open_platform(home), me(), type_=type_, limit=limit, env=env)
    if json:
        print_json([e.to_dict() for e in found])
        return
    table(
        None,
        ["id", "type", "subject", "at", "dispatched", "payload"],
        [
            [
                e.id,
                e.type,
                e.subject,
                e.created_at,
                "yes" if e.dispatched_at else "not yet",
                jsonlib.dumps(e.payload)[:60],
            ]
            for e in found
        ],
    )


def _summary(d: Delivery) -> str:
    if d.status == "failed" or (d.status == "pending" and d.last_error):
        return d.last_error or ""
    result = d.result or {}
    for key in ("http_status", "exit_code", "execution"):
        if key in result:
            return f"{key.replace('_', ' ')} {result[key]}"
    return ""


@app.command()
def deliveries(
    event: Annotated[
        str | None, typer.Option(help="Only this event's.", show_default=False)
    ] = None,
    rule: Annotated[str | None, typer.Option(help="Only this rule's.", show_default=False)] = None,
    status: Annotated[
        str | None,
        typer.Option(help="pending, running, succeeded or failed.", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    env: EnvOption = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """List deliveries of events to rules, oldest of the selection first.

    Example: lockgate events deliveries --status failed --env dev
    """
    from lockgate.automation import service

    found = service.list_deliveries(
        open_platform(home), me(), env=env, event_id=event, rule=rule, status=status, limit=limit
    )
    if json:
        print_json([d.to_dict() for d in found])
        return
    table(
        None,
        ["id", "event", "rule", "action", "status", "attempts", "outcome"],
        [
            [
                d.id,
                d.event_id,
                d.rule,
                d.rule_spec["action"]["kind"],
                d.status,
                f"{d.attempts}/{d.max_attempts}",
                _summary(d)[:70],
            ]
            for d in found
        ],
    )


@app.command()
def delivery(
    delivery_id: DeliveryArg,
    env: EnvOption = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Show one delivery with every attempt."""
    from lockgate.automation import service

    found = service.get_delivery(open_platform(home), me(), delivery_id, env=env)
    if json:
        print_json(found.to_dict())
        return
    console.print(
        f"[bold]{found.id}[/bold]  rule {found.rule}  event {found.event_id}  "
        f"[{_STYLE.get(found.status, '')}]{found.status}[/]  attempts {found.attempts}/{found.max_attempts}"
    )
    for attempt in found.history:
        detail = attempt.get("error") or jsonlib.dumps(attempt.get("result", {}))[:100]
        console.print(
            f"  #{attempt['attempt']} {attempt['at']} {attempt['outcome']} "
            f"[dim]{escape(str(attempt['worker']))}[/dim] {escape(detail)}"
        )


@app.command()
def redeliver(delivery_id: DeliveryArg, env: EnvOption = None, home: HomeOption = None) -> None:
    """Give a failed delivery one more attempt; a running worker picks it up at once."""
    from lockgate.automation import service

    again = service.redeliver(open_platform(home), me(), delivery_id, env=env)
    console.print(f"Delivery {again.id} is pending again (attempt {again.attempts + 1}).")


def _print_report(report: Report) -> None:
    d, outcome = report.delivery, report.outcome
    mark = "[green]✓[/green]" if outcome.ok else "[red]✗[/red]"
    detail = _summary(d) if report.recorded else "outcome discarded: another worker took over"
    console.print(
        f"{mark} {report.environment} {d.rule} ← {d.event_id} attempt {d.attempts}: "
        f"[{_STYLE.get(d.status, '')}]{d.status}[/] {escape(detail)}"
    )


@app.command()
def worker(
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            "-e",
            help="Serve this environment (repeatable; default: all).",
            show_default=False,
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option(help="Deliver what is due now, then exit (for cron or CI).")
    ] = False,
    poll_interval: Annotated[
        float, typer.Option(min=0.01, max=60, help="Seconds between looks for work when idle.")
    ] = 0.05,
    lease_margin: Annotated[
        float,
        typer.Option(
            min=0, max=3600, help="Seconds a claim outlives its action's time limit.", hidden=True
        ),
    ] = 30.0,
    home: HomeOption = None,
) -> None:
    """Deliver events to the rules' actions until stopped (Ctrl-C).

    Several workers may run at once: each claims a delivery with a lease, and a delivery whose
    worker died is delivered again once the lease expires (at least once). The daemon
    (`lockgate up`, when it lands) will run one for you.

    Example: lockgate events worker --env dev
    """
    from lockgate.automation.worker import Worker

    platform = open_platform(home)
    names = env or platform.env_names
    for name in names:
        platform.env(name)  # an unknown name fails here, naming the declared ones
    w = Worker(
        platform, names, poll_s=poll_interval, lease_margin_s=lease_margin, on_report=_print_report
    )
    if once:
        w.run_once()
        return
    console.print(f"Worker {w.id} delivering events in {', '.join(names)}. Stop with Ctrl-C.")
    stop = threading.Event()
    try:
        w.run(stop)
    except KeyboardInterrupt:
        console.print("Worker stopped.")


@rules_app.command("list")
def rules_list(env: EnvOption = None, home: HomeOption = None, json: JsonOption = False) -> None:
    """List the applied rules and how their deliveries stand (default: every environment).

    Example: lockgate rules list --env dev --json
    """
    from lockgate.automation import service

    found = service.list_rules(open_platform(home), me(), env=env)
    if json:
        print_json([r.to_dict() for r in found])
        return
    rows = []
    for r in found:
        spec = r.rule.spec
        action = spec["action"]
        target = (
            action.get("url")
            or action.get("pipeline")
            or (f"{action['endpoint']} ← {action['model']}" if "endpoint" in action else None)
            or " ".join(action.get("command", []))
        )
        counts = ", ".join(f"{n} {s}" for s, n in sorted(r.deliveries.items())) or "none"
        match = ", ".join(f"{k}={v}" for k, v in spec.get("match", {}).items()) or "any"
        rows.append(
            [
                r.environment,
                r.rule.name,
                spec["event"],
                match,
                f"{action['kind']} {target}",
                counts,
            ]
        )
    table(None, ["env", "rule", "event", "match", "action", "deliveries"], rows)
