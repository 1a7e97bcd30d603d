"""The local executor: each step attempt in its own process, forked from a warm fork server.

Starting a fresh interpreter for every step costs Python's start-up and every import again
(≈0.25 s per step for Metaflow on this machine kind). Instead each executor starts one *fork
server*, a small process that imports the step runtime — and any ``preload`` modules, e.g.
``sklearn.ensemble`` — once, then forks one child per attempt. A child is a process of its own
(its own memory; steps share no state), but it starts in about a millisecond with everything
already imported.

Why not ``multiprocessing``'s "forkserver" context: its server is one per interpreter, and
``set_forkserver_preload`` sets a global list that only counts when that server first starts,
so two executors with different preload lists would silently share one server (and one
executor's shutdown could not stop it without breaking the other's running steps). Its children
are also pickled ``Process`` objects that re-import the parent's ``__main__``, and a
non-daemonic child keeps the parent from exiting. Here each executor owns its server, and they
speak a few JSON lines over a socket pair.

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
import gc
import importlib
import json
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import time
import traceback
import warnings
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from lockgate.errors import ConfigError, ValidationError
from lockgate.ids import isoformat, utcnow
from lockgate.pipelines.executors.base import Executor, TaskHandle
from lockgate.pipelines.task import StepResult, StepTask

#: Always preloaded: the code every step process runs.
RUNTIME_MODULE = "lockgate.pipelines.runtime"
#: How long a stopped step gets between SIGTERM and SIGKILL.
TERM_GRACE_S = 2.0
#: How often steps that are not children of our fork server (adopted ones) are checked.
POLL_S = 0.05
_READY_TIMEOUT_S = 300.0  # preloading a large library from a cold disk can take a while
_REPLY_TIMEOUT_S = 30.0
_BOOT = (
    "import json, sys; config = json.loads(sys.argv[1]); sys.path[:] = config['sys_path']; "
    "from lockgate.pipelines.executors.local import _serve; _serve(config)"
)


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
        self._server: _ForkServer | None = _ForkServer(self.preload)
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
        except _ServerGone:
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

    def _live_server(self) -> _ForkServer:
        if self._server is None or not self._server.alive:
            self._lose_server()
            self._server = _ForkServer(self.preload)
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


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """State and start time (clock ticks after boot, field 22) of ``pid``; None if no such."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat.rsplit(b")", 1)[1].split()
    return fields[0].decode(), int(fields[19])


def _same_process(pid: int, ticks: int | None) -> bool:
    """Whether ``pid`` is still the live process that started at ``ticks``."""
    stat = _proc_stat(pid)
    return stat is not None and ticks is not None and stat[1] == ticks and stat[0] not in "ZX"


def _age(ticks: int) -> float:
    """Seconds since a process that started at ``ticks`` (clock ticks after boot) started."""
    since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    return max(0.0, since_boot - ticks / os.sysconf("SC_CLK_TCK"))


# ---------------------------------------------------------------------- the fork server


class _ServerGone(Exception):
    """The fork server process has exited."""


class _ForkServer:
    """The executor's end of one fork server process."""

    def __init__(self, preload: Sequence[str]) -> None:
        ours, theirs = socket.socketpair()
        config = {"fd": theirs.fileno(), "preload": list(preload), "sys_path": list(sys.path)}
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, json.dumps(config)],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(_REPLY_TIMEOUT_S)
        self._sock = ours
        self._selector = selectors.DefaultSelector()
        self._selector.register(ours, selectors.EVENT_READ)
        self._finalizer = weakref.finalize(self, _close, self._sock, self._selector, self._proc)
        self._buffer = b""
        self._replies: deque[dict[str, Any]] = deque()
        self._exits: list[tuple[int, int]] = []
        self._eof = False
        self._ready = False
        self._preload_error: str | None = None

    @property
    def alive(self) -> bool:
        return not self._eof and self._proc.poll() is None

    def fork(self, task_json: str) -> tuple[int, int | None]:
        """Start a step process for ``task_json``; returns its pid and start time."""
        if not self._ready:
            failed = self._reply(_READY_TIMEOUT_S).get("failed") or []
            self._ready = True
            if failed:
                self._preload_error = "; ".join(failed)
        if self._preload_error:
            raise ConfigError(
                f"the executor could not preload {self._preload_error}.",
                hint="Install the module in this environment, or remove it from the preload list.",
            )
        try:
            self._sock.sendall(json.dumps({"op": "fork", "task": task_json}).encode() + b"\n")
        except OSError:
            raise _ServerGone from None
        reply = self._reply(_REPLY_TIMEOUT_S)
        if reply.get("op") != "forked":
            raise RuntimeError(f"the fork server could not start a process: {reply.get('error')}")
        return int(reply["pid"]), reply.get("ticks")

    def read(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for messages, and file them (replies, or steps that ended)."""
        if not self._eof and self._selector.select(max(0.0, timeout)):
            try:
                data = self._sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                self._eof = True
            self._buffer += data
            *lines, self._buffer = self._buffer.split(b"\n")
            for line in lines:
                message = json.loads(line)
                if message.get("op") == "exited":
                    self._exits.append((int(message["pid"]), int(message["code"])))
                else:
                    self._replies.append(message)

    def take_exits(self) -> list[tuple[int, int]]:
        """The (pid, exit code) of the steps that ended since the last call."""
        exits, self._exits = self._exits, []
        return exits

    def close(self) -> None:
        self._finalizer()

    def _reply(self, limit: float) -> dict[str, Any]:
        end = time.monotonic() + limit
        while not self._replies:
            if self._eof:
                raise _ServerGone
            if time.monotonic() > end:
                raise RuntimeError(f"the fork server did not answer within {limit:g} s.")
            self.read(end - time.monotonic())
        return self._replies.popleft()


def _close(
    sock: socket.socket, selector: selectors.BaseSelector, proc: subprocess.Popen[bytes]
) -> None:
    selector.close()
    sock.close()
    try:
        proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        # It stays while steps it forked still run (after a GC without shutdown); they do not
        # need it, so it can go.
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------- inside the server


def _serve(config: dict[str, Any]) -> None:
    """The fork server's main: preload, then fork a step process per request until the
    executor hangs up and the last step has ended."""
    failed = []
    for name in config["preload"]:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - reported to the executor, which raises it
            failed.append(f"{name} ({type(exc).__name__}: {exc})")
    import ctypes  # noqa: F401 - imported once here, so each child's stdio flush is instant

    # Python 3.12+ warns when a process with threads forks, and a preloaded library may start
    # some (OpenBLAS does). Were that warning an error (-W error), os.fork() would raise in
    # here *after* creating the child, and the executor would not know the step runs.
    warnings.filterwarnings(
        "ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning
    )
    _Server(socket.socket(fileno=config["fd"]), failed).loop()


class _Server:
    def __init__(self, sock: socket.socket, failed: list[str]) -> None:
        self.sock = sock
        self.children: set[int] = set()
        self.connected = True
        self.buffer = b""
        self.sig_r, self.sig_w = os.pipe()
        os.set_blocking(self.sig_r, False)
        os.set_blocking(self.sig_w, False)
        # A Python handler (not SIG_DFL) so that SIGCHLD writes to the wakeup fd.
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.set_wakeup_fd(self.sig_w)
        # What is imported now is never collected: children do not copy its pages when a
        # collection would touch them.
        gc.freeze()
        self.send({"op": "ready", "failed": failed})

    def loop(self) -> None:
        while self.connected or self.children:
            watch = [self.sig_r, self.sock.fileno()] if self.connected else [self.sig_r]
            readable, _, _ = select.select(watch, [], [])
            if self.sig_r in readable:
                self.reap()
            if self.connected and self.sock.fileno() in readable:
                self.receive()

    def receive(self) -> None:
        try:
            data = self.sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self.connected = False  # the executor is gone; its steps carry on
            return
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.fork(json.loads(line)["task"])

    def fork(self, task_json: str) -> None:
        try:
            pid = os.fork()
        except OSError as exc:
            self.send({"op": "error", "error": f"fork failed: {exc}"})
            return
        if pid == 0:
            _child(task_json, self.sock, (self.sig_r, self.sig_w))
        # The child does the same; whichever runs first, the group exists before the executor
        # learns the pid (EACCES/ESRCH here only mean the child got there first and moved on).
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        self.children.add(pid)
        stat = _proc_stat(pid)
        self.send({"op": "forked", "pid": pid, "ticks": stat[1] if stat else None})

    def reap(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.sig_r, 4096):
                continue
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            # Whatever the step left running in its group goes with it, as in a container.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            self.send({"op": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    def send(self, message: dict[str, Any]) -> None:
        if not self.connected:
            return
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            self.connected = False


def _child(task_json: str, sock: socket.socket, fds: tuple[int, ...]) -> NoReturn:
    """A freshly forked step process: undo the server's set-up, run the step, exit."""
    code = 1
    try:
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sock.close()
        for fd in fds:
            os.close(fd)
        _reseed_numpy()
        from lockgate.pipelines import runtime

        runtime.main(task_json)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:  # noqa: BLE001 - the child must reach os._exit whatever happens
        traceback.print_exc()
    finally:
        _flush_all()
        os._exit(code)


def _reseed_numpy() -> None:
    """Give the child fresh numpy randomness, as a new process would have: forked children of
    one server would otherwise all draw the same unseeded numbers."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def _flush_all() -> None:
    """Flush Python's and C's stdio buffers: ``os._exit`` skips both."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None).fflush(None)
