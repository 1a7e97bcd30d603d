"""Running an execution from the command line: live progress, the closing summary, detach."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import typer

from lockgate.cli.common import console, me, print_json
from lockgate.pipelines.expressions import format_values

if TYPE_CHECKING:
    from lockgate.pipelines.executors.base import Executor
    from lockgate.pipelines.orchestrator import StepEvent
    from lockgate.platform import Platform

_STYLE = {
    "succeeded": "green",
    "cached": "cyan",
    "failed": "red",
    "running": "yellow",
    "pending": "dim",
    "skipped": "dim",
    "stopped": "magenta",
}


def detach_execution(platform: Platform, execution_id: str, env: str) -> None:
    from lockgate.config.daemon_files import running
    from lockgate.pipelines import service

    if running(platform.home):
        console.print(
            f"Execution [bold]{execution_id}[/bold] left to the daemon, which starts it within seconds."
        )
        return
    service.spawn_driver(platform, execution_id, env)
    console.print(
        f"Execution [bold]{execution_id}[/bold] started in the background. Follow it with `lockgate pipeline describe {execution_id}`."
    )


def drive_here(
    platform: Platform,
    execution_id: str,
    env: str,
    parallel: int | None,
    json: bool,
    executor: Executor | None = None,
) -> None:
    from lockgate.pipelines import service

    described = service.describe(platform, me(), execution_id, env=env)
    order = [s["name"] for s in described["steps"]]
    states: dict[str, dict[str, Any]] = {
        s["name"]: {
            "status": s["status"],
            "duration": s["duration_s"],
            "reason": s["reason"],
            "attempt": s["attempt"],
        }
        for s in described["steps"]
    }
    started = time.monotonic()

    def render() -> Any:
        from rich.table import Table

        out = Table(
            title=f"{described['pipeline']}@{described['version']} · {execution_id}",
            show_edge=False,
        )
        for column in ("step", "state", "time", "note"):
            out.add_column(column)
        for name in order:
            st = states[name]
            colour = _STYLE.get(st["status"], "white")
            seconds = f"{st['duration']:.2f}s" if st["duration"] is not None else ""
            out.add_row(
                name, f"[{colour}]{st['status']}[/{colour}]", seconds, (st["reason"] or "")[:80]
            )
        return out

    if json or not sys.stdout.isatty():

        def on_event(event: StepEvent) -> None:
            if not json:
                seconds = (
                    f" {event.run.duration_s:.2f}s" if event.run.duration_s is not None else ""
                )
                note = f" — {event.run.reason}" if event.run.reason else ""
                console.print(f"  {event.step}: {event.status}{seconds}{note}", markup=False)

        final = service.drive(
            platform,
            me(),
            execution_id,
            env=env,
            on_event=on_event,
            parallel=parallel,
            executor=executor,
        )
    else:
        from rich.live import Live

        with Live(render(), console=console, refresh_per_second=8) as live:

            def on_event(event: StepEvent) -> None:
                states[event.step] = {
                    "status": event.status,
                    "duration": event.run.duration_s,
                    "reason": event.run.reason,
                    "attempt": event.run.attempt,
                }
                live.update(render())

            final = service.drive(
                platform,
                me(),
                execution_id,
                env=env,
                on_event=on_event,
                parallel=parallel,
                executor=executor,
            )
    if json:
        print_json(service.describe(platform, me(), execution_id, env=env))
    else:
        colour = _STYLE.get(final.status, "white")
        reason = f": {final.reason}" if final.reason else ""
        console.print(
            f"Execution {execution_id} [{colour}]{final.status}[/{colour}] in {time.monotonic() - started:.2f}s{reason}"
        )
        _summary(service.describe(platform, me(), execution_id, env=env))
    if final.status != "succeeded":
        raise typer.Exit(1)


def _summary(doc: dict[str, Any]) -> None:
    """The metrics and registrations an execution produced, one line each."""
    for s in doc["steps"]:
        value = s.get("value")
        if s["status"] not in ("succeeded", "cached") or not isinstance(value, dict):
            continue
        if s["kind"] == "register_model":
            console.print(
                f"  registered model {value['group']}/{value['version']} ({value['approval']}), "
                f"artifact {value['model_digest'][:19]}"
            )
        elif s["output"] and s["output"]["type"] == "Metrics":
            shown = format_values(value)
            console.print(f"  {s['name']}: {shown}")


def continue_execution(
    platform: Platform,
    execution_id: str,
    env: str | None,
    detach: bool,
    parallel: int | None,
    json: bool,
) -> None:
    """Drive an existing execution here, or in the background with ``detach``."""
    env_name = platform.ready(env).name
    if detach:
        detach_execution(platform, execution_id, env_name)
        return
    drive_here(platform, execution_id, env_name, parallel, json)
