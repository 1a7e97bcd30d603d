"""Serving throughput beside a peer: Lockgate against ``mlflow models serve``, same model.

The abalone model (HistGradientBoostingRegressor, 10 features) is trained once and served twice,
one instance / worker each, one numeric thread each (``OMP_NUM_THREADS=1``):

* **Lockgate**: a temporary home (SQLite), the daemon (``lockgate up --detach``), one endpoint of
  one instance, called through the environment's gateway (the endpoint's stable URL).
* **mlflow**: ``mlflow models serve --env-manager local --workers 1`` on the same fitted estimator
  (saved with ``mlflow.sklearn.save_model``). mlflow lives in its own virtual environment,
  ``.bench-cache/mlflow-venv``, created and installed on the first run (a few minutes), reused after.

For each: **p50 latency** of one client over a kept-alive connection (after 50 warm-up requests),
and **requests per second** of 8 concurrent clients, each on its own kept-alive connection, one
row per request; every response must be a 200 (others count as failures). Also mlflow's start →
first good ``/ping``. Target: Lockgate at least 2× mlflow's throughput.

Timings inform; they never fail anything, and neither does a failed mlflow installation (the
comparison is then skipped). Usage: ``python bench/bench_serving_peer.py [--seconds N]``.
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

from lockgate.auth.principal import local_principal
from lockgate.config.home import Home
from lockgate.infra import service as infra
from lockgate.infra.bootstrap import init
from lockgate.platform import Platform
from lockgate.registry import service as registry
from lockgate.serving import service as endpoints

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench-cache" / "mlflow-venv"
MLFLOW = "mlflow==3.18.0"
ROW = [0.455, 0.365, 0.095, 0.514, 0.2245, 0.101, 0.15, 0.0, 0.0, 1.0]
CLIENTS = 8
GATEWAY, DAEMON = 39300, 39499
SAVE = "import joblib, mlflow.sklearn, sys; mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2])"


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


def run_with_heartbeat(command: list[str | Path], label: str, start: float) -> bool:
    """Run ``command``, saying every 30 s that it still runs; False (and why) if it failed."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while True:
        try:
            output, _ = proc.communicate(timeout=30)
            break
        except subprocess.TimeoutExpired:
            print(f"mlflow: {label}: still running ({time.monotonic() - start:.0f} s)", flush=True)
    if proc.returncode != 0:
        skip(f"{label} failed (exit {proc.returncode}); its output ends:", *output.splitlines()[-4:])
        return False
    print(f"mlflow: {label}: done ({time.monotonic() - start:.0f} s)", flush=True)
    return True


def mlflow_venv(wanted: str) -> Path | None:
    """The venv's python with mlflow ``wanted`` importable, installed if need be; None if not."""
    python = VENV / "bin" / "python"
    check = [python, "-c", f"import mlflow; assert mlflow.__version__ == {wanted!r}"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        print(f"mlflow: reusing {VENV} (mlflow {wanted})", flush=True)
        return python
    shutil.rmtree(VENV, ignore_errors=True)
    packages = [f"mlflow=={wanted}", f"scikit-learn=={version('scikit-learn')}", "pandas"]
    print(f"mlflow: installing {' '.join(packages)} into {VENV} (a few minutes)", flush=True)
    start = time.monotonic()
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages]
    if run_with_heartbeat([sys.executable, "-m", "venv", VENV], "python -m venv", start):
        if run_with_heartbeat(pip, "pip install", start):
            return python
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_mlflow(python: Path, model: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}",
    }
    env["VIRTUAL_ENV"] = str(VENV)
    command = [
        python.parent / "mlflow",
        "models",
        "serve",
        "-m",
        str(model),
        "--env-manager",
        "local",
    ]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            env=env,
            cwd=log.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ping(proc: subprocess.Popen[bytes], port: int, timeout: float) -> float:
    """Seconds from now to the first 200 on ``/ping``; raises RuntimeError past the timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited with {proc.returncode}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return time.monotonic() - start
        except OSError:
            time.sleep(0.05)  # not listening yet
        finally:
            conn.close()
    raise RuntimeError(f"mlflow models serve did not answer /ping within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the server and every child of its session."""
    with contextlib.suppress(ProcessLookupError):  # the group is already gone
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError):  # children that outlived the leader
        os.killpg(proc.pid, signal.SIGKILL)


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> bool:
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        conn.close()  # the next request reconnects
        return False


def p50(port: int, path: str, body: bytes, n: int) -> tuple[float, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    times, failures = [], 0
    for i in range(n + 50):
        start = time.perf_counter()
        ok = post(conn, path, body)
        if i >= 50:  # the first ones warm the connection and the model
            times.append((time.perf_counter() - start) * 1000)
        failures += not ok
    conn.close()
    return statistics.median(times), failures


def throughput(port: int, path: str, body: bytes, seconds: float) -> tuple[float, int]:
    counts, failures = [0] * CLIENTS, [0] * CLIENTS
    stop_at = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        while time.monotonic() < stop_at:
            failures[i] += not post(conn, path, body)
            counts[i] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (sum(counts) - sum(failures)) / (time.monotonic() - start), sum(failures)


def start_lockgate(home: Home, folder: Path, env: dict[str, str]) -> None:
    me = local_principal()
    init(home, me, org="bench", environments=["dev"])
    text = home.platform_file.read_text().replace(
        "allow_self_approval = false", "allow_self_approval = true"
    )
    home.platform_file.write_text(
        text.replace("port_range = [20000, 20999]", f"port_range = [{GATEWAY}, 39399]")
        + f"\n[daemon]\nport = {DAEMON}\n"
    )
    platform = Platform.open(home)
    infra.apply(platform, me, confirm=lambda plan: True)
    ref = registry.register(platform, me, folder, "abalone").ref
    registry.set_status(platform, me, ref, registry.APPROVED)
    subprocess.run(
        [sys.executable, "-m", "lockgate", "up", "--detach"],
        env=env,
        check=True,
        capture_output=True,
    )
    endpoints.create(platform, me, "abalone", ref, instances=1)
    while (found := endpoints.get(platform, me, "abalone")).status != "InService":
        if found.status == "Failed":
            raise SystemExit(f"the endpoint failed: {found.reason}")
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=1000, help="latency requests per server")
    args = parser.parse_args()
    python = mlflow_venv()
    if python is None:
        return
    workdir = Path(tempfile.mkdtemp(prefix="lockgate-bench-peer-"))
    home = Home(workdir / "home")
    env = {**os.environ, "LOCKGATE_HOME": str(home.root)}
    server: subprocess.Popen[bytes] | None = None
    try:
        folder = train(workdir / "model")
        features = json.loads((folder / "lockgate-model.json").read_text())["features"]
        start_lockgate(home, folder, env)
        path, body = "/endpoints/abalone/invocations", json.dumps([ROW]).encode()
        rows = {
            "Lockgate (gateway)": (
                *p50(GATEWAY, path, body, args.requests),
                *throughput(GATEWAY, path, body, args.seconds),
            )
        }

        subprocess.run(
            [python, "-c", SAVE, folder / "model.joblib", workdir / "mlflow-model"],
            check=True,
            capture_output=True,
        )
        port, log = free_port(), workdir / "mlflow.log"
        server = serve_mlflow(python, workdir / "mlflow-model", port, log)
        try:
            to_ping = wait_ping(server, port, timeout=120)
        except RuntimeError as exc:
            print(
                f"mlflow: peer comparison skipped: {exc}; its log ends:",
                *log.read_text().splitlines()[-10:],
                sep="\n  ",
            )
            return
        body = json.dumps({"dataframe_split": {"columns": features, "data": [ROW]}}).encode()
        rows["mlflow models serve"] = (
            *p50(port, "/invocations", body, args.requests),
            *throughput(port, "/invocations", body, args.seconds),
        )

        print(
            f"\nserving abalone, 1 row per request, 1 instance / worker each, {CLIENTS} clients for {args.seconds:g} s:"
        )
        print(f"  {'':<22}{'p50 ms':>8}{'requests/s':>12}{'failures':>10}")
        for label, (latency, bad, rps, bad_too) in rows.items():
            print(f"  {label:<22}{latency:8.2f}{rps:12.0f}{bad + bad_too:10d}")
        ratio = rows["Lockgate (gateway)"][2] / rows["mlflow models serve"][2]
        print(
            f"  throughput Lockgate / mlflow: {ratio:.2f}× (target ≥ 2×: {'met' if ratio >= 2 else 'NOT met'})"
        )
        print(f"  mlflow models serve start → first good /ping: {to_ping:.2f} s")
    finally:
        if server is not None:
            stop(server)
        subprocess.run([sys.executable, "-m", "lockgate", "down"], env=env, capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
