"""Approval → webhook latency with the event worker running (target: under 100 ms median).

A temporary home (SQLite) with one rule: "ModelVersionApprovalChanged to Approved in group
bench → signed webhook". The worker runs as its own process (`lockgate events worker`), as it
would beside the daemon; an HTTP receiver on loopback timestamps each delivery. Latency is from
the moment the approval's transaction returned to the moment the receiver read the request.
Beside it, as the floor: the same signed POST sent directly to the same receiver.
Timings inform; they never fail anything. Usage: ``python bench/bench_automation.py [--n N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from lockgate.auth.principal import Principal, local_principal
from lockgate.automation.signing import sign
from lockgate.config.home import Home
from lockgate.infra import service as infra
from lockgate.infra.bootstrap import init
from lockgate.parameters import service as parameters
from lockgate.platform import Platform
from lockgate.registry import service as registry

DIGEST = "sha256:" + "0" * 64
TARGET_MS = 100.0


class Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                at = time.perf_counter()
                subject = json.loads(body)["event"]["subject"]
                self.send_response(204)
                self.end_headers()
                with receiver.arrived:
                    receiver.arrivals[subject] = at
                    receiver.arrived.notify_all()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, subject: str, timeout: float = 30.0) -> float:
        with self.arrived:
            if not self.arrived.wait_for(lambda: subject in self.arrivals, timeout):
                raise TimeoutError(f"no delivery of {subject} within {timeout} s")
            return self.arrivals[subject]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lockgate-bench-automation-"))
    receiver = Receiver()
    worker = None
    try:
        me = local_principal()
        home = Home(workdir / "home")
        init(home, me, org="bench", environments=["dev"])
        home.platform_file.write_text(
            home.platform_file.read_text().replace(
                "allow_self_approval = false", "allow_self_approval = true"
            )
            + f"""
[rules.notify]
event = "ModelVersionApprovalChanged"
match = {{ group = "bench", to = "Approved" }}
action = {{ kind = "webhook", url = "{receiver.url}", secret_parameter = "/lockgate/{{env}}/hook" }}
"""
        )
        platform = Platform.open(home)
        infra.apply(platform, me, confirm=lambda plan: True)
        parameters.put(platform, me, "/lockgate/dev/hook", "bench-secret", secure=True)
        env = platform.ready()
        for _ in range(args.n):
            with env.store.transaction() as session:
                registry.register_version(
                    session, group="bench", model_digest=DIGEST, metrics={}, lineage={}, by="x"
                )
        worker = subprocess.Popen(
            [sys.executable, "-m", "lockgate", "events", "worker", "--env", "dev"],
            env={**os.environ, "LOCKGATE_HOME": str(home.root)},
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        _warm_up(platform, me, receiver)
        latencies = []
        for i in range(2, args.n + 1):
            registry.set_status(platform, me, f"bench/{i}", registry.APPROVED)
            committed = time.perf_counter()
            latencies.append((receiver.wait_for(f"bench/{i}") - committed) * 1000)
            time.sleep(0.013)  # approvals land at unrelated moments of the worker's poll cycle

        direct = []
        with httpx.Client() as client:
            body = json.dumps({"event": {"subject": "direct"}}).encode()
            for _ in range(args.n):
                start = time.perf_counter()
                client.post(
                    receiver.url,
                    content=body,
                    headers={"Lockgate-Signature": sign("bench-secret", body)},
                )
                direct.append((time.perf_counter() - start) * 1000)

        median = statistics.median(latencies)
        p95 = sorted(latencies)[int(0.95 * (len(latencies) - 1))]
        floor = statistics.median(direct)
        print(
            f"automation, approval → signed webhook, {len(latencies)} approvals, worker polling every 50 ms:"
        )
        print(
            f"  approval committed → receiver   median {median:7.1f} ms   p95 {p95:7.1f} ms   "
            f"target < {TARGET_MS:.0f} ms: {'met' if median < TARGET_MS else 'NOT met'}"
        )
        print(
            f"  direct signed POST (floor)      median {floor:7.2f} ms   ratio {median / floor:6.1f}×"
        )
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=10)
        receiver.server.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)


def _warm_up(platform: Platform, me: Principal, receiver: Receiver) -> None:
    """One delivery before timing: the worker's imports and first connections."""
    registry.set_status(platform, me, "bench/1", registry.APPROVED)
    receiver.wait_for("bench/1")


if __name__ == "__main__":
    main()
