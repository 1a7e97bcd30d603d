"""Instance processes of one endpoint generation: start, health-check, supervise, drain.

Every instance, built-in or bring-your-own, is started the same way: a command run in the model
folder with ``SAGEMAKER_BIND_TO_PORT`` (the port to listen on, on 127.0.0.1) and
``SM_MODEL_DIR`` set, and is ready when ``GET /ping`` answers 200. Its output goes to a log
file; when it fails to start, the last lines of that log are the reason shown to the user.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockgate.serving.package import Manifest

STARTING, READY, EXITED, FAILED = "starting", "ready", "exited", "failed"
#: Seconds a draining instance may take to finish its requests before it is killed.
DRAIN_S = 30.0
#: Longest wait before restarting a crashed instance (1, 2, 4… seconds until then).
MAX_BACKOFF_S = 30.0
LOG_TAIL_LINES = 20


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 16384))
        text = handle.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the instance binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ping(port: int, timeout: float = 1.0) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _parent_death_signal() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl


# Resolved here, not in the child: between fork and exec the child may not import anything.
_PRCTL = _parent_death_signal()


def die_with_parent() -> None:
    """In the child before exec (Linux): get SIGTERM when the daemon dies, even by kill -9."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Instance:
    index: int
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    state: str = STARTING
    started: float = 0.0
    restarts: int = 0
    retry_at: float | None = None
    exit_code: int | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "port": self.port,
            "pid": self.process.pid if self.process else None,
            "state": self.state,
            "restarts": self.restarts,
        }


@dataclass
class Fleet:
    """The instances serving one generation of an endpoint."""

    env: str
    endpoint: str
    generation: int
    model_ref: str
    model_digest: str
    model_dir: Path
    manifest: Manifest
    config: dict[str, Any]
    environment: dict[str, str]
    instances: list[Instance] = field(default_factory=list)

    @property
    def startup_timeout_s(self) -> float:
        return float(self.config.get("startup_timeout_s") or self.manifest.startup_timeout_s)

    def command(self) -> list[str]:
        if self.manifest.format == "command":
            assert self.manifest.command is not None
            return list(self.manifest.command)
        return [sys.executable, "-m", "lockgate.serving.instance"]

    def start(self, instance: Instance) -> None:
        env = {
            **os.environ,
            **self.environment,
            "SAGEMAKER_BIND_TO_PORT": str(instance.port),
            "SM_MODEL_DIR": str(self.model_dir),
            "LOCKGATE_INSTANCE": f"g{self.generation}-{instance.index}",
            "LOCKGATE_WATCH_PARENT": "1",
            # A command's `python` is the one Lockgate runs on, with the same libraries.
            "PATH": os.pathsep.join(
                [os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)]
            ),
        }
        instance.log.parent.mkdir(parents=True, exist_ok=True)
        with instance.log.open("ab") as log:
            log.write(
                f"--- start {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} port {instance.port}\n".encode()
            )
            log.flush()
            instance.process = subprocess.Popen(
                self.command(),
                cwd=self.model_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        instance.state = STARTING
        instance.started = time.monotonic()
        instance.retry_at = None

    def check(self, instance: Instance) -> None:
        """Move ``instance`` along: starting → ready, or → exited/failed."""
        if instance.process is None:
            return
        code = instance.process.poll()
        if code is not None:
            instance.exit_code = code
            instance.state = FAILED if instance.state == STARTING else EXITED
            return
        if instance.state == STARTING:
            if ping(instance.port, timeout=0.5):
                instance.state = READY
            elif time.monotonic() - instance.started > self.startup_timeout_s:
                instance.process.kill()
                instance.process.wait()
                instance.exit_code = None
                instance.state = FAILED

    def failure(self, instance: Instance) -> str:
        if instance.exit_code is None:
            why = f"did not answer /ping within {self.startup_timeout_s:g} s"
        else:
            why = f"exited with status {instance.exit_code} while starting"
        tail = log_tail(instance.log)
        return f"instance {instance.index} of {self.model_ref} {why}" + (
            f":\n{tail}" if tail else ""
        )

    def ready_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{i.port}" for i in self.instances if i.state == READY]

    def stop(self, *, wait: bool = False) -> None:
        """Drain: SIGTERM each instance (it finishes what it is serving), SIGKILL after DRAIN_S."""
        processes = [i.process for i in self.instances if i.process and i.process.poll() is None]
        for process in processes:
            process.terminate()

        def reap() -> None:
            deadline = time.monotonic() + DRAIN_S
            for process in processes:
                try:
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

        if wait:
            reap()
        else:
            threading.Thread(target=reap, daemon=True, name=f"drain-{self.endpoint}").start()
