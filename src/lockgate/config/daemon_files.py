"""Where a home's daemon says it runs: ``run/daemon.lock`` (held while it lives) and
``run/daemon.json`` (its pid and URLs). Read by the CLI, the services and the daemon itself."""

from __future__ import annotations

import fcntl
import json
from typing import Any

from lockgate.config.home import Home

INFO_FILE = "daemon.json"
LOCK_FILE = "daemon.lock"
LOG_FILE = "daemon.log"


def running(home: Home) -> dict[str, Any] | None:
    """The running daemon's ``daemon.json``, or None when no daemon holds the home's lock."""
    lock = home.run_dir / LOCK_FILE
    if not lock.exists():
        return None
    with lock.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = home.run_dir / INFO_FILE
            try:
                return dict(json.loads(info.read_text()))
            except (FileNotFoundError, json.JSONDecodeError):
                return {"pid": None, "starting": True}
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None
