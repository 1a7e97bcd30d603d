"""Serving a model package for a moment, on a free loopback port, with the same server an
endpoint's instances run: for an endpoint test inside a pipeline step, before anything is
deployed::

    with local.serve(model.path) as url:
        httpx.post(f"{url}/invocations", json={"inputs": "Question: …"})
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lockgate.errors import ValidationError
from lockgate.serving.fleet import die_with_parent, log_tail, ping
from lockgate.serving.package import read_manifest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(model_dir: Path, *, timeout_s: float | None = None) -> Iterator[str]:
    """The URL of the package in ``model_dir`` served on 127.0.0.1 until the block ends; a
    package that does not start is an error with the server's last output."""
    manifest = read_manifest(model_dir)
    command = (
        list(manifest.command)
        if manifest.format == "command" and manifest.command
        else [sys.executable, "-m", "lockgate.serving.instance"]
    )
    wait_s = timeout_s if timeout_s is not None else manifest.startup_timeout_s
    port = _free_port()
    env = {
        **os.environ,
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SM_MODEL_DIR": str(model_dir),
        "LOCKGATE_ENDPOINT": "local-test",
        "LOCKGATE_WATCH_PARENT": "1",
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
    }
    with tempfile.TemporaryDirectory(prefix="lockgate-serve-") as scratch:
        log = Path(scratch) / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=model_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        try:
            deadline = time.monotonic() + wait_s
            while not ping(port, timeout=0.5):
                if process.poll() is not None or time.monotonic() > deadline:
                    why = (
                        f"exited with status {process.returncode}"
                        if process.poll() is not None
                        else f"did not answer /ping within {wait_s:g} s"
                    )
                    raise ValidationError(
                        f"the model server for {model_dir} {why}:\n{log_tail(log)}"
                    )
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
