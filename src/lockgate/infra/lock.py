"""The infrastructure lock: one holder at a time, like a state backend's lock table.

The lock is a file created with ``O_EXCL``, holding who took it, when, from which process, and a
lock id. A lock whose process is gone (same host, process not running, or a different process
now using that pid) is *stale*: ``lockgate infra unlock ID`` breaks it.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lockgate.errors import ConflictError, LockHeldError, NotFoundError
from lockgate.ids import isoformat, new_id, utcnow

LOCK_FILE = "lock.json"


@dataclass(frozen=True)
class LockInfo:
    id: str
    holder: str
    operation: str
    since: str
    host: str
    pid: int
    pid_started: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def is_stale(self) -> bool:
        """Whether the holding process is certainly gone (only knowable on the same host)."""
        if self.pid <= 0:
            return True
        if self.host != socket.gethostname():
            return False
        if not _pid_alive(self.pid):
            return True
        return self.pid_started is not None and _process_start(self.pid) != self.pid_started

    def describe(self) -> str:
        state = "its process is gone: the lock is stale" if self.is_stale() else "still running"
        return (
            f"held by {self.holder} for '{self.operation}' since {self.since} "
            f"(pid {self.pid} on {self.host}, {state}; lock id {self.id})"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    return stat is None or stat[0] != "Z"  # a zombie has exited


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, to tell a reused pid apart."""
    stat = _proc_stat(pid)
    return stat[19] if stat else None


@dataclass(frozen=True)
class StateLock:
    folder: Path

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    def current(self) -> LockInfo | None:
        try:
            return LockInfo(**json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            # A holder killed between creating and filling the file: nothing useful inside.
            return LockInfo(
                "unreadable", "unknown", "unknown", "unknown", socket.gethostname(), 0, None
            )

    @contextmanager
    def hold(self, holder: str, operation: str) -> Iterator[LockInfo]:
        """Take the lock for the ``with`` block; fail at once when someone else holds it."""
        info = LockInfo(
            id=new_id(),
            holder=holder,
            operation=operation,
            since=isoformat(utcnow()),
            host=socket.gethostname(),
            pid=os.getpid(),
            pid_started=_process_start(os.getpid()),
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            held = self.current()
            detail = held.describe() if held else "just released; try again"
            hint = (
                f"Run `lockgate infra unlock {held.id}` to break it."
                if held and held.is_stale()
                else "Wait for it to finish, then try again."
            )
            raise LockHeldError(f"the infrastructure lock is {detail}.", hint=hint) from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(info.to_dict(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            yield info
        finally:
            self._release(info.id)

    def _release(self, lock_id: str) -> None:
        held = self.current()
        if held is not None and held.id == lock_id:
            self.path.unlink(missing_ok=True)

    def break_stale(self, lock_id: str) -> LockInfo:
        """Remove the lock ``lock_id`` when its holder is gone; returns what was removed."""
        held = self.current()
        if held is None:
            raise NotFoundError("the infrastructure lock is not held.", hint="Nothing to unlock.")
        if held.id != lock_id:
            raise NotFoundError(
                f"lock {lock_id} is not the current lock; that is {held.id}.",
                hint="Check the id with `lockgate status`.",
            )
        if not held.is_stale():
            raise ConflictError(
                f"the infrastructure lock is {held.describe()}.",
                hint="Only a stale lock can be broken: wait for its holder or stop that process first.",
            )
        self.path.unlink(missing_ok=True)
        return held
