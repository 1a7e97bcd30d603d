"""The fork server: a small process that imports the step runtime (and any ``preload``
modules) once, then forks one child per step attempt, so a step starts in about a millisecond
with everything already imported instead of paying Python's start-up and imports again.

The executor and its server speak JSON lines over a socket pair. The server runs in a new
session; each child leads its own process group. When the executor's end of the socket closes
(even because its process was killed), the server keeps reaping the children it forked and exits
after the last one, so running steps finish and leave their result files.

Why not ``multiprocessing``'s "forkserver" context: its server is one per interpreter, and
``set_forkserver_preload`` sets a global list that only counts when that server first starts,
so two executors with different preload lists would silently share one server (and one
executor's shutdown could not stop it without breaking the other's running steps). Its children
are also pickled ``Process`` objects that re-import the parent's ``__main__``, and a
non-daemonic child keeps the parent from exiting. Here each executor owns its server.
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
from typing import Any, NoReturn

from lockgate.errors import ConfigError

_READY_TIMEOUT_S = 300.0  # preloading a large library from a cold disk can take a while
_REPLY_TIMEOUT_S = 30.0
_BOOT = (
    "import json, sys; config = json.loads(sys.argv[1]); sys.path[:] = config['sys_path']; "
    "from lockgate.pipelines.executors.forkserver import serve; serve(config)"
)


def proc_stat(pid: int) -> tuple[str, int] | None:
    """State and start time (clock ticks after boot, field 22) of ``pid``; None if no such."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat.rsplit(b")", 1)[1].split()
    return fields[0].decode(), int(fields[19])


class ServerGone(Exception):
    """The fork server process has exited."""


class ForkServer:
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
            raise ServerGone from None
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
                raise ServerGone
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


def serve(config: dict[str, Any]) -> None:
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
        stat = proc_stat(pid)
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
