"""Serving throughput beside a peer: Lockgate against ``mlflow models serve``, same model.

The abalone model (HistGradientBoostingRegressor, 10 features) is trained once and served twice,
one instance / worker each, one numeric thread each (``OMP_NUM_THREADS=1``):

* **Lockgate**: a temporary home (SQLite), the daemon (``lockgate up --detach``), one endpoint of
  one instance, called through the environment's gateway (the endpoint's stable URL).
* **mlflow**: ``mlflow models serve --env-manager local --workers 1`` on the same fitted estimator
  (saved with ``mlflow.sklearn.save_model``). mlflow lives in its own virtual environment,
  ``.bench-cache/mlflow-venv``, installed on the first run (a few minutes) and reused after.

For each: **p50 latency** of one client over a kept-alive connection (after 50 warm-up requests),
and **requests per second** of 8 concurrent clients, each on its own kept-alive connection, one
row per request; every response must be a 200 (others count as failures). Also mlflow's start →
first good ``/ping``. Target: Lockgate at least 2× mlflow's throughput.

Timings inform; they never fail anything, and neither does a failed mlflow installation (the
comparison is then skipped). Usage: ``python bench/bench_serving_peer.py [--seconds N]``
(``--mlflow-version`` picks another mlflow; the venv is rebuilt for it).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as each instance runs; before numpy loads

from lockgate.auth import credentials
from lockgate.auth.principal import local_principal
from lockgate.config.home import Home
from lockgate.infra import service as infra
from lockgate.infra.bootstrap import init
from lockgate.platform import Platform
from lockgate.registry import service as registry
from lockgate.serving import service as endpoints

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench-cache" / "mlflow-venv"
#: The newest mlflow whose dependencies the package registry here has (3.18.0 needs an
#: mlflow-skinny 3.18.0 it lacks).
MLFLOW_VERSION = "3.17.2"
ROW = [0.455, 0.365, 0.095, 0.514, 0.2245, 0.101, 0.15, 0.0, 0.0, 1.0]
CLIENTS = 8
# below the kernel's ephemeral range (client connections take ports there), clear of the tests
# (23000-30999) and bench_serving.py's (29000-29199)
GATEWAY, DAEMON, MLFLOW_PORTS = 31300, 31499, range(31500, 32000)
SAVE = """import joblib, mlflow.sklearn, sys
trusted = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]  # skops asks
mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2], skops_trusted_types=trusted)"""


#: The Authorization header of every request (set once the daemon is up).
AUTH: dict[str, str] = {}


def train(folder: Path) -> Path:
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingRegressor

    sys.path.insert(0, str(ROOT / "examples" / "abalone"))
    from features import one_hot_sex

    from lockgate.pipelines.types import Model

    frame = one_hot_sex(pd.read_csv(ROOT / "examples" / "abalone" / "data" / "abalone.csv"))
    estimator = HistGradientBoostingRegressor(max_iter=100, random_state=0)
    estimator.fit(frame.drop(columns=["rings"]), frame["rings"])
    folder.mkdir(parents=True)
    Model(folder).save(estimator)
    return folder


def skip(why: str, *lines: str) -> None:
    print(f"mlflow: peer comparison skipped: {why}", *lines, sep="\n  ", flush=True)


def run_with_heartbeat(command: list[str], label: str, start: float) -> bool:
    """Run ``command``, saying every 30 s that it still runs; False (and why) if it failed."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while True:
        try:
            output, _ = proc.communicate(timeout=30)
            break
        except subprocess.TimeoutExpired:
            print(f"mlflow: {label}: still running ({time.monotonic() - start:.0f} s)", flush=True)
    if proc.returncode != 0:
        tail = [line[:200] for line in output.splitlines() if not line.startswith("WARNING")]
        skip(f"{label} failed (exit {proc.returncode}); its output ends:", *tail[-4:])
        return False
    print(f"mlflow: {label}: done ({time.monotonic() - start:.0f} s)", flush=True)
    return True


def mlflow_venv(wanted: str) -> str | None:
    """The venv's python with mlflow ``wanted`` importable, installed if need be; None if not."""
    python = str(VENV / "bin" / "python")
    check = [python, "-c", f"import mlflow; assert mlflow.__version__ == {wanted!r}"]
    if Path(python).exists() and subprocess.run(check, capture_output=True).returncode == 0:
        print(f"mlflow: reusing {VENV} (mlflow {wanted})", flush=True)
        return python
    shutil.rmtree(VENV, ignore_errors=True)
    packages = [f"mlflow=={wanted}", f"scikit-learn=={version('scikit-learn')}", "pandas"]
    print(f"mlflow: installing {' '.join(packages)} into {VENV} (a few minutes)", flush=True)
    start = time.monotonic()
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages]
    venv = [sys.executable, "-m", "venv", str(VENV)]
    for label, command in (("python -m venv", venv), ("pip install", pip)):
        if not run_with_heartbeat(command, label, start):
            return None
    return python


def free_port() -> int:
    for port in MLFLOW_PORTS:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken
            return port
    raise RuntimeError(f"no free port in {MLFLOW_PORTS}")


def serve_mlflow(model: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VIRTUAL_ENV": str(VENV)}
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env['PATH']}"  # its own uvicorn, not ours
    command = [str(VENV / "bin" / "mlflow"), "models", "serve", "-m", str(model)]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1"]
    with log.open("wb") as out:  # the child keeps its own handle
        return subprocess.Popen(
            command, env=env, cwd=log.parent, stdout=out, stderr=out, start_new_session=True
        )


def wait_ping(proc: subprocess.Popen[bytes], port: int, timeout: float) -> float:
    """Seconds from now to the first 200 on ``/ping``; RuntimeError past ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited with {proc.returncode}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/ping")
            ok = conn.getresponse().status == 200
        except OSError:
            ok = False  # not listening yet
        finally:
            conn.close()
        if ok:
            return time.monotonic() - start
        time.sleep(0.05)
    raise RuntimeError(f"mlflow models serve did not answer /ping within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the server and every process of its session."""
    with contextlib.suppress(ProcessLookupError):  # the whole group is already gone
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    with contextlib.suppress(ProcessLookupError):  # none outlived the leader
        os.killpg(proc.pid, signal.SIGKILL)


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> bool:
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **AUTH})
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        conn.close()  # counted as a failure; the next request reconnects
        return False


def latency(port: int, path: str, body: bytes, n: int) -> tuple[float, int]:
    """p50 in ms of one client, kept alive, after 50 warm-up requests; and the failures."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    times: list[float] = []
    failures = 0
    for i in range(n + 50):
        start = time.perf_counter()
        failures += not post(conn, path, body)
        if i >= 50:
            times.append((time.perf_counter() - start) * 1000)
    conn.close()
    return statistics.median(times), failures


def throughput(port: int, path: str, body: bytes, seconds: float) -> tuple[float, int]:
    """Good responses per second of CLIENTS threads, each kept alive; and the failures."""
    good, bad = [0] * CLIENTS, [0] * CLIENTS
    stop_at = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        while time.monotonic() < stop_at:
            if post(conn, path, body):
                good[i] += 1
            else:
                bad[i] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(good) / (time.monotonic() - start), sum(bad)


Row = tuple[float, float, int]  # p50 ms, requests/s, failures


def measure(port: int, path: str, body: bytes, args: argparse.Namespace) -> Row:
    p50, failed = latency(port, path, body, args.requests)
    rps, failed_too = throughput(port, path, body, args.seconds)
    return p50, rps, failed + failed_too


def start_lockgate(home: Home, folder: Path, env: dict[str, str]) -> None:
    """A platform of one environment, the daemon up, and one endpoint of one instance in service."""
    me = local_principal()
    init(home, me, org="bench", environments=["dev"])
    text = home.platform_file.read_text().replace(
        "allow_self_approval = false", "allow_self_approval = true"
    )
    home.platform_file.write_text(
        text.replace("port_range = [20000, 20999]", f"port_range = [{GATEWAY}, {GATEWAY + 99}]")
        + f"\n[daemon]\nport = {DAEMON}\n"
    )
    platform = Platform.open(home)
    infra.apply(platform, me, confirm=lambda plan: True)
    ref = registry.register(platform, me, folder, "abalone").ref
    registry.set_status(platform, me, ref, registry.APPROVED)
    up = [sys.executable, "-m", "lockgate", "up", "--detach"]
    subprocess.run(up, env=env, check=True, capture_output=True)
    endpoints.create(platform, me, "abalone", ref, instances=1)
    # The gateway needs a token: every request carries one (verified once, then cached).
    AUTH["Authorization"] = f"Bearer {credentials.login(platform, me, 'dev', ttl_s=3600)}"
    while (found := endpoints.get(platform, me, "abalone")).status != "InService":
        if found.status == "Failed":
            raise SystemExit(f"the endpoint failed: {found.reason}")
        time.sleep(0.01)


def report(rows: dict[str, Row], seconds: float, to_ping: float) -> None:
    print(f"\nserving abalone, 1 row per request, 1 instance / worker each ({seconds:g} s runs):")
    print(f"  {'':<22}{'p50 ms':>8}{f'requests/s ({CLIENTS} clients)':>26}{'failures':>10}")
    for label, (p50, rps, failures) in rows.items():
        print(f"  {label:<22}{p50:8.2f}{rps:26.0f}{failures:10d}")
    (_, ours, _), (_, theirs, _) = rows.values()
    ratio = ours / theirs if theirs else float("inf")
    verdict = "met" if ratio >= 2 else "NOT met"
    print(f"  throughput Lockgate / mlflow: {ratio:.2f}× (target ≥ 2×: {verdict})")
    print(f"  mlflow models serve, start → first good /ping: {to_ping:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="of each throughput run")
    parser.add_argument("--requests", type=int, default=1000, help="of each latency run")
    parser.add_argument("--mlflow-version", default=MLFLOW_VERSION)
    args = parser.parse_args()
    python = mlflow_venv(args.mlflow_version)
    if python is None:
        return
    workdir = Path(tempfile.mkdtemp(prefix="lockgate-bench-peer-"))
    home = Home(workdir / "home")
    env = {**os.environ, "LOCKGATE_HOME": str(home.root)}
    server: subprocess.Popen[bytes] | None = None
    try:
        folder = train(workdir / "model")
        print("Lockgate: starting the daemon and the endpoint", flush=True)
        start_lockgate(home, folder, env)
        path = "/endpoints/abalone/invocations"
        rows = {"Lockgate (gateway)": measure(GATEWAY, path, json.dumps([ROW]).encode(), args)}

        save = [python, "-c", SAVE, str(folder / "model.joblib"), str(workdir / "mlflow-model")]
        saved = subprocess.run(save, capture_output=True, text=True)
        if saved.returncode != 0:
            return skip("mlflow.sklearn.save_model failed:", *saved.stderr.splitlines()[-4:])
        log = workdir / "mlflow.log"
        try:
            port = free_port()
            print(f"mlflow: starting mlflow models serve on port {port}", flush=True)
            server = serve_mlflow(workdir / "mlflow-model", port, log)
            to_ping = wait_ping(server, port, timeout=120)
        except RuntimeError as exc:
            tail = log.read_text().splitlines()[-8:] if log.exists() else []
            return skip(f"{exc}; its log ends:", *tail)
        features = json.loads((folder / "lockgate-model.json").read_text())["features"]
        body = json.dumps({"dataframe_split": {"columns": features, "data": [ROW]}}).encode()
        rows["mlflow models serve"] = measure(port, "/invocations", body, args)
        report(rows, args.seconds, to_ping)
    finally:
        if server is not None:
            stop(server)
        subprocess.run([sys.executable, "-m", "lockgate", "down"], env=env, capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
