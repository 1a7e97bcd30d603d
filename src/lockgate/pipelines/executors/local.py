"""The local executor: each step attempt in its own process, forked from a warm fork server.

Starting a fresh interpreter for every step costs Python's start-up and every import again
(≈0.25 s per step for Metaflow on this machine kind). Instead each executor starts one *fork
server*, a small process that imports the step runtime — and any ``preload`` modules, e.g.
``sklearn.ensemble`` — once, then forks one child per attempt. A child is a process of its own
(its own memory; steps share no state), but it starts in about a millisecond with everything
already imported.

The fork server itself, and why it is not ``multiprocessing``'s, is in ``forkserver.py``.

Which process is whose, and what survives what::

    orchestrator ──socketpair── fork server (new session) ──fork── step (own process group)

* The fork server runs in a new session, so a terminal's Ctrl-C or hang-up aimed at the
  orchestrator does not reach the steps: the orchestrator decides what to stop.
* Each step leads its own process group. A timeout or a cancel stops the step and everything it
  started (SIGTERM to the group, SIGKILL :data:`TERM_GRACE_S` later); when a step ends, what it
  left running in its group is killed, as when a container stops.
* When the orchestrator dies, even by ``kill -9``, nothing signals the steps: they finish, store
  their outputs and write their result files. The fork server sees the socket close, keeps
  reaping the steps it forked and exits after the last one. A new executor re-attaches with
  :meth:`LocalExecutor.adopt` (pid and process start time, so a reused pid is not mistaken for
  the step) or reads the result file the step left.

Liveness checks read ``/proc``, so adoption of a running step works on Linux; elsewhere only a
finished step's result file can be adopted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from lockgate.errors import ValidationError
from lockgate.ids import isoformat, utcnow
from lockgate.pipelines.executors.base import Executor, TaskHandle
from lockgate.pipelines.executors.forkserver import ForkServer, ServerGone, proc_stat
from lockgate.pipelines.task import StepResult, StepTask

#: Always preloaded: the code every step process runs.
RUNTIME_MODULE = "lockgate.pipelines.runtime"
#: How long a stopped step gets between SIGTERM and SIGKILL.
TERM_GRACE_S = 2.0
#: How often steps that are not children of our fork server (adopted ones) are checked.
POLL_S = 0.05


@dataclass(eq=False)
class _Attempt:
    handle: TaskHandle
    task: StepTask
    pid: int | None
    ticks: int | None  # the process's start time, to tell it from a later process with its pid
    begun: float  # time.monotonic() when the process started
    polled: bool  # not a child of our live fork server: watched through /proc
    exit_code: int | None = None  # from the fork server; negative: killed by that signal
    gone: bool = False  # a polled process that no longer exists
    result: StepResult | None = None  # known without a process (adopted after it finished)
    stop_reason: str | None = None
    kill_at: float | None = None

    @property
    def deadline(self) -> float | None:
        return None if self.task.timeout_s is None else self.begun + self.task.timeout_s

    @property
    def ended(self) -> bool:
        return self.result is not None or self.exit_code is not None or self.gone


class LocalExecutor(Executor):
    """Runs each step attempt in its own process on this machine, forked from a warm server.

    The fork server starts in the constructor and imports in the background, so build the
    executor early; the first :meth:`submit` waits until the server is ready. Call
    :meth:`shutdown` when done, or use the executor as a context manager.

    Args:
        max_parallel: how many attempts the caller may run at once (default: the CPU count).
        preload: modules the fork server imports once so that steps need not, e.g.
            ``["sklearn.ensemble", "pandas"]``. Third-party libraries only: a preloaded project
            module would shadow the execution's code snapshot, and the runtime refuses that.
            A module that fails to import makes :meth:`submit` raise :class:`ConfigError`.
    """

    def __init__(self, max_parallel: int | None = None, preload: Sequence[str] = ()) -> None:
        self.max_parallel = max_parallel if max_parallel is not None else os.cpu_count() or 2
        if self.max_parallel < 1:
            raise ValidationError(
                f"max_parallel must be at least 1, not {self.max_parallel}.",
                hint="Use 1 to run one step at a time.",
            )
        self.preload = (RUNTIME_MODULE, *preload)
        self._host = socket.gethostname()
        self._server: ForkServer | None = ForkServer(self.preload)
        self._attempts: dict[str, _Attempt] = {}
        self._by_pid: dict[int, _Attempt] = {}  # children of the current fork server
        self._next_poll = 0.0
        self._closed = False

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    def submit(self, task: StepTask) -> TaskHandle:
        """Fork the attempt's process. Raises ConfigError when a preload module is missing."""
        if self._closed:
            raise RuntimeError("this executor has been shut down; create a new one.")
        handle_id = _handle_id(task)
        if handle_id in self._attempts:
            raise ValueError(f"attempt {handle_id} is already running.")
        # A result left by an earlier run of this attempt must not be read as this run's.
        Path(task.result_path).unlink(missing_ok=True)
        server = self._live_server()
        try:
            pid, ticks = server.fork(json.dumps(task.to_dict()))
        except ServerGone:
            # Not retried: the server may have forked the step before dying, and a second copy
            # would break "no step runs twice at the same time". The next submit gets a new one.
            self._lose_server()
            raise RuntimeError(
                f"the fork server died while starting step {task.step!r}; see the stderr of "
                "this process. Resume the execution to run the step again."
            ) from None
        info = {
            "host": self._host,
            "pid": pid,
            "pid_started": ticks,
            "result_path": task.result_path,
        }
        attempt = _Attempt(TaskHandle(handle_id, info), task, pid, ticks, time.monotonic(), False)
        self._attempts[handle_id] = attempt
        self._by_pid[pid] = attempt
        return attempt.handle

    def wait(self, timeout: float) -> list[tuple[TaskHandle, StepResult]]:
        """Attempts that ended, waiting up to ``timeout`` s for the first; enforces timeouts.

        A stopped attempt (timed out, cancelled) is reported once its process is gone, with
        the reason as its error, even if it wrote a result file in its last moments.
        """
        end = time.monotonic() + max(0.0, timeout)
        pause = 0.0
        while True:
            self._read_server(pause)
            now = time.monotonic()
            self._enforce_deadlines(now)
            self._poll(now)
            ended = [a for a in self._attempts.values() if a.ended]
            if ended or now >= end:
                return [self._report(a) for a in ended]
            pause = min([end, *self._wakeups(now)]) - now

    def cancel(self, handle: TaskHandle) -> None:
        """Stop the attempt (SIGTERM, then SIGKILL); :meth:`wait` reports it as "cancelled".

        An attempt that has already ended keeps its real result, and an unknown or reported
        handle is ignored, so cancelling is idempotent.
        """
        attempt = self._attempts.get(handle.id)
        if attempt is not None and not attempt.ended and attempt.stop_reason is None:
            self._stop(attempt, "cancelled", time.monotonic())

    def adopt(self, task: StepTask, info: dict[str, Any]) -> TaskHandle | None:
        """Re-attach to an attempt another executor (or orchestrator) started on this host.

        Still running (same host, same pid, same process start time): watched by polling, with
        its timeout counted from when it started. Ended with a result file: that result is
        reported by the next :meth:`wait`. Otherwise None: it is gone, run it again.
        """
        handle = TaskHandle(_handle_id(task), {k: v for k, v in info.items() if k != "id"})
        if handle.id in self._attempts:
            return self._attempts[handle.id].handle
        pid, ticks = info.get("pid"), info.get("pid_started")
        if (
            info.get("host") == self._host
            and isinstance(pid, int)
            and isinstance(ticks, int)
            and _same_process(pid, ticks)
        ):
            begun = time.monotonic() - _age(ticks)
            self._attempts[handle.id] = _Attempt(handle, task, pid, ticks, begun, True)
            return handle
        result = _read_result(task.result_path)
        if result is None:
            return None
        self._attempts[handle.id] = _Attempt(
            handle, task, None, None, time.monotonic(), True, result=result
        )
        return handle

    def running(self) -> int:
        return len(self._attempts)

    def shutdown(self) -> None:
        """Kill every attempt still running (adopted ones too) and stop the fork server."""
        if self._closed:
            return
        self._closed = True
        for attempt in self._attempts.values():
            self._signal(attempt, signal.SIGKILL)
        self._attempts.clear()
        self._by_pid.clear()
        if self._server is not None:
            self._server.close()
            self._server = None

    # ------------------------------------------------------------------ internals

    def _live_server(self) -> ForkServer:
        if self._server is None or not self._server.alive:
            self._lose_server()
            self._server = ForkServer(self.preload)
        return self._server

    def _lose_server(self) -> None:
        """The server is gone: its children (orphans now) are watched like adopted ones."""
        for attempt in self._by_pid.values():
            attempt.polled = True
        self._by_pid.clear()
        if self._server is not None:
            self._server.close()
            self._server = None

    def _read_server(self, pause: float) -> None:
        if self._server is None:
            time.sleep(pause)
            return
        self._server.read(pause)
        for pid, code in self._server.take_exits():
            attempt = self._by_pid.pop(pid, None)
            if attempt is not None:
                attempt.exit_code = code
        if not self._server.alive:
            self._lose_server()

    def _wakeups(self, now: float) -> list[float]:
        times = []
        for attempt in self._attempts.values():
            deadline = attempt.deadline
            if attempt.stop_reason is None and deadline is not None:
                times.append(deadline)
            if attempt.kill_at is not None:
                times.append(attempt.kill_at)
            if attempt.polled:
                times.append(max(now, self._next_poll))
        return times

    def _enforce_deadlines(self, now: float) -> None:
        for attempt in self._attempts.values():
            deadline = attempt.deadline
            if attempt.ended:
                continue
            if attempt.stop_reason is None and deadline is not None and now >= deadline:
                self._stop(attempt, f"timed out after {attempt.task.timeout_s:g} s", now)
            elif attempt.kill_at is not None and now >= attempt.kill_at:
                attempt.kill_at = None
                self._signal(attempt, signal.SIGKILL)

    def _poll(self, now: float) -> None:
        if now < self._next_poll:
            return
        self._next_poll = now + POLL_S
        for attempt in self._attempts.values():
            if not attempt.polled or attempt.ended or attempt.pid is None:
                continue
            if not _same_process(attempt.pid, attempt.ticks):
                attempt.gone = True
                # What it left running in its group goes too, as the fork server would do; the
                # pid is not reused while its group has members, so this signals nothing else.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(attempt.pid, signal.SIGKILL)

    def _stop(self, attempt: _Attempt, reason: str, now: float) -> None:
        attempt.stop_reason = reason
        attempt.kill_at = now + TERM_GRACE_S
        self._signal(attempt, signal.SIGTERM)

    def _signal(self, attempt: _Attempt, sig: int) -> None:
        """Signal the attempt's process group, unless its pid may now be another process's."""
        if attempt.ended or attempt.pid is None:
            return
        if attempt.polled and not _same_process(attempt.pid, attempt.ticks):
            attempt.gone = True
            return
        # No group: the step ended a moment ago and the fork server's report is on its way.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(attempt.pid, sig)

    def _report(self, attempt: _Attempt) -> tuple[TaskHandle, StepResult]:
        del self._attempts[attempt.handle.id]
        if attempt.result is not None:
            return attempt.handle, attempt.result
        duration = time.monotonic() - attempt.begun
        reason = attempt.stop_reason
        result = None if reason else _read_result(attempt.task.result_path)
        if result is None:
            reason = reason or _death(attempt.exit_code)
            result = StepResult(ok=False, error=reason, duration_s=duration)
            _note(attempt.task.log_path, reason)
        return attempt.handle, result


def _handle_id(task: StepTask) -> str:
    return f"{task.execution_id}/{task.step}/{task.attempt}"


def _death(exit_code: int | None) -> str:
    if exit_code is None:
        return "the step's process ended without a result (exit status unknown)"
    if exit_code < 0:
        return f"the step's process died (signal {-exit_code})"
    return f"the step's process died (exit code {exit_code})"


def _note(log_path: str, message: str) -> None:
    """Say in the step's log why the executor ended it: the step could not say it itself."""
    with contextlib.suppress(OSError), open(log_path, "a", encoding="utf-8") as log:
        log.write(f"--- {isoformat(utcnow())} {message}\n")


def _read_result(path: str) -> StepResult | None:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return StepResult.from_dict(json.loads(text))
    except (ValueError, TypeError) as exc:
        return StepResult(ok=False, error=f"the step's result file {path} is unreadable ({exc})")


def _same_process(pid: int, ticks: int | None) -> bool:
    """Whether ``pid`` is still the live process that started at ``ticks``."""
    stat = proc_stat(pid)
    return stat is not None and ticks is not None and stat[1] == ticks and stat[0] not in "ZX"


def _age(ticks: int) -> float:
    """Seconds since a process that started at ``ticks`` (clock ticks after boot) started."""
    since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    return max(0.0, since_boot - ticks / os.sysconf("SC_CLK_TCK"))
