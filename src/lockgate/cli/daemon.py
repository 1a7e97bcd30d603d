"""``lockgate up`` and ``lockgate down``: the daemon of this platform home."""

from __future__ import annotations

import os
import signal
import time
from typing import Annotated, Any

import typer

from lockgate.cli.common import HomeOption, console, open_platform

#: Seconds `up --detach` waits for the daemon to answer, and `down` for it to stop.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 90.0


def _print_ready(info: dict[str, Any]) -> None:
    console.print(
        f"Lockgate daemon running (pid {info['pid']}): API {info['api_url']} (docs at /docs)"
    )
    for env, url in info["gateways"].items():
        console.print(f"  {env} gateway: {url}/endpoints/NAME/invocations")


def up(
    detach: Annotated[
        bool,
        typer.Option("--detach", "-d", help="Run in the background; logs go to run/daemon.log."),
    ] = False,
    home: HomeOption = None,
) -> None:
    """Start the daemon: the API, a gateway per environment, the endpoint controller and the
    event worker. Endpoints recorded in the stores start serving again.

    Examples:

      lockgate up            # in the foreground; Ctrl-C stops it (endpoints drain)

      lockgate up --detach   # in the background; `lockgate down` stops it
    """
    import logging

    from lockgate.server import daemon

    platform = open_platform(home)
    if detach:
        _detach(platform)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    daemon.serve(platform, on_ready=_print_ready)
    console.print("Lockgate daemon stopped.")


def _detach(platform: Any) -> None:
    from lockgate.config import daemon_files
    from lockgate.server import daemon

    info = daemon.start_detached(platform, timeout=START_TIMEOUT_S)
    _print_ready(info)
    log_path = platform.home.run_dir / daemon_files.LOG_FILE
    console.print(f"Logs: {log_path}. Stop it with `lockgate down`.")


def down(home: HomeOption = None) -> None:
    """Stop the daemon gracefully: endpoints drain their requests first.

    Example: lockgate down
    """
    from lockgate.config import daemon_files

    platform = open_platform(home)
    info = daemon_files.running(platform.home)
    if not info or not info.get("pid"):
        console.print("No daemon is running for this home.")
        return
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while daemon_files.running(platform.home):
        if time.monotonic() > deadline:
            from lockgate.errors import ConflictError

            raise ConflictError(
                f"the daemon (pid {pid}) has not stopped after {STOP_TIMEOUT_S:.0f} s.",
                hint=f"Look at {platform.home.run_dir / daemon_files.LOG_FILE}; `kill -9 {pid}` is safe (endpoints restart with the next `lockgate up`).",
            )
        time.sleep(0.1)
    console.print(f"Lockgate daemon (pid {pid}) stopped.")
