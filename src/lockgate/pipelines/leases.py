"""Who holds an execution's lease: a process named by host, pid and start time."""

from __future__ import annotations

import os
import socket

from lockgate.infra.lock import _pid_alive, _process_start


def owner_id() -> str:
    """This process as a lease owner (the start time tells a reused pid apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"


def owner_is_gone(owner: str) -> bool:
    """Whether the process named by a lease owner is certainly gone (knowable on its host only)."""
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    return not _pid_alive(pid) or (started != "None" and _process_start(pid) != started)
