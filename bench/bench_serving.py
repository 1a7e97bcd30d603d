"""Serving the abalone model: added latency, throughput, and approval → in service.

On a temporary home (SQLite) with the daemon running (`lockgate up --detach`), one endpoint of
one instance serving the abalone model (HistGradientBoostingRegressor, 10 features):

* **latency**, one client with a kept-alive connection, one row per request: through the
  environment's gateway (the endpoint's stable URL) and straight to the instance, beside the
  model's own in-process ``predict`` on a one-row array (the floor — what the instance calls
  for this model, whose columns the codec has already checked; one numeric thread, as the
  instance runs) and on a one-row DataFrame. Target: under 1 ms added at p50 over the DataFrame
  predict — the model's own predict as it was trained, and the baseline of the issue's figure
  for ``mlflow models serve`` (≈ 5 ms added); the figure over the array predict is printed too.
* **throughput**, 8 concurrent clients for a few seconds, through the gateway and direct.
* **approval → in service**: from ``endpoint create`` of an approved version to its first good
  ``/ping`` through the gateway. Target: under 3 s.
* **rollouts under load**: failed requests (3 clients) during a canary rollout to a second model,
  and during one to a model that fails every request, which the alarms roll back. Target: 0.

Timings inform; they never fail anything. Usage: ``python bench/bench_serving.py [--requests N]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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
ROW = [0.455, 0.365, 0.095, 0.514, 0.2245, 0.101, 0.15, 0.0, 0.0, 1.0]
CLIENTS = 8


#: The Authorization header of every request (set once the daemon is up).
AUTH: dict[str, str] = {}


def train(folder: Path, seed: int = 0) -> Path:
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingRegressor

    sys.path.insert(0, str(ROOT / "examples" / "abalone"))
    from features import one_hot_sex

    from lockgate.pipelines.types import Model

    frame = one_hot_sex(pd.read_csv(ROOT / "examples" / "abalone" / "data" / "abalone.csv"))
    estimator = HistGradientBoostingRegressor(max_iter=100, random_state=seed)
    estimator.fit(frame.drop(columns=["rings"]), frame["rings"])
    folder.mkdir(parents=True)
    Model(folder).save(estimator)
    return folder


def latencies(host: str, port: int, path: str, n: int) -> list[float]:
    body = json.dumps([ROW]).encode()
    conn = http.client.HTTPConnection(host, port)
    headers = {"Content-Type": "application/json", **AUTH}
    out = []
    for i in range(n + 50):
        start = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if i >= 50:  # the first ones warm the connection and the model
            out.append((time.perf_counter() - start) * 1000)
        assert response.status == 200, response.status
    conn.close()
    return out


def throughput(host: str, port: int, path: str, seconds: float) -> float:
    body = json.dumps([ROW]).encode()
    counts = [0] * CLIENTS
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, port)
        while time.monotonic() < stop:
            conn.request(
                "POST", path, body=body, headers={"Content-Type": "application/json", **AUTH}
            )
            conn.getresponse().read()
            counts[i] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def in_process(folder: Path, n: int, *, frame: bool) -> list[float]:
    """The model's own predict on one row: a DataFrame with its feature names, or an array."""
    import warnings

    import joblib
    import numpy as np
    import pandas as pd

    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    model = joblib.load(folder / "model.joblib")
    features = json.loads((folder / "lockgate-model.json").read_text())["features"]
    out = []
    for i in range(n + 50):
        start = time.perf_counter()
        model.predict(pd.DataFrame([ROW], columns=features) if frame else np.asarray([ROW]))
        if i >= 50:
            out.append((time.perf_counter() - start) * 1000)
    return out


def under_load(action: Callable[[], None], port: int, clients: int = 3) -> tuple[int, int]:
    """(failed, total) requests sent through the gateway while ``action`` runs."""
    body = json.dumps([ROW]).encode()
    stop = threading.Event()
    counts = [[0, 0] for _ in range(clients)]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            try:
                conn.request(
                    "POST",
                    "/endpoints/abalone/invocations",
                    body=body,
                    headers={"Content-Type": "application/json", **AUTH},
                )
                ok = conn.getresponse()
                ok.read()
                failed = ok.status != 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                failed = True
            counts[i][0] += failed
            counts[i][1] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    try:
        action()
    finally:
        stop.set()
        for t in threads:
            t.join()
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def wait_until(check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the endpoint")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lockgate-bench-serving-"))
    home = Home(workdir / "home")
    me = local_principal()
    env = {**os.environ, "LOCKGATE_HOME": str(home.root)}
    try:
        init(home, me, org="bench", environments=["dev"])
        text = home.platform_file.read_text().replace(
            "allow_self_approval = false", "allow_self_approval = true"
        )
        home.platform_file.write_text(
            text.replace("port_range = [20000, 20999]", "port_range = [29000, 29099]")
            + "\n[daemon]\nport = 29199\n"
        )
        platform = Platform.open(home)
        infra.apply(platform, me, confirm=lambda plan: True)
        folder = train(workdir / "model")
        ref = registry.register(platform, me, folder, "abalone").ref
        registry.set_status(platform, me, ref, registry.APPROVED)
        subprocess.run(
            [sys.executable, "-m", "lockgate", "up", "--detach"],
            env=env,
            check=True,
            capture_output=True,
        )

        start = time.perf_counter()
        endpoints.create(platform, me, "abalone", ref)
        # The gateway needs a token: every request carries one (verified once, then cached).
        AUTH["Authorization"] = f"Bearer {credentials.login(platform, me, 'dev', ttl_s=3600)}"
        while True:
            found = endpoints.get(platform, me, "abalone")
            if found.status == "InService":
                break
            if found.status == "Failed":
                raise SystemExit(f"the endpoint failed: {found.reason}")
            time.sleep(0.01)
        to_service = time.perf_counter() - start
        instance_port = found.serving["instances"][0]["port"]

        floor = in_process(folder, args.requests, frame=False)
        with_frame = in_process(folder, args.requests, frame=True)
        gateway = latencies("127.0.0.1", 29000, "/endpoints/abalone/invocations", args.requests)
        direct = latencies("127.0.0.1", instance_port, "/invocations", args.requests)
        gateway_rps = throughput("127.0.0.1", 29000, "/endpoints/abalone/invocations", args.seconds)
        direct_rps = throughput("127.0.0.1", instance_port, "/invocations", args.seconds)

        second = train(workdir / "model2", seed=1)
        ref2 = registry.register(platform, me, second, "abalone").ref
        registry.set_status(platform, me, ref2, registry.APPROVED)
        broken = workdir / "broken"
        broken.mkdir()
        (broken / "inference.py").write_text(
            "def model_fn(model_dir):\n    return None\n"
            "def predict_fn(data, model):\n    raise RuntimeError('a bad model')\n"
        )
        ref3 = registry.register(platform, me, broken, "abalone").ref
        registry.set_status(platform, me, ref3, registry.APPROVED)

        def canary() -> None:
            endpoints.update(platform, me, "abalone", model_ref=ref2, strategy="canary:20:3")
            wait_until(
                lambda: (
                    (endpoints.get(platform, me, "abalone").serving or {}).get("model_ref") == ref2
                )
            )

        def rolled_back() -> None:
            endpoints.update(platform, me, "abalone", model_ref=ref3, strategy="canary:20:10")
            wait_until(
                lambda: "rolled back" in (endpoints.get(platform, me, "abalone").reason or "")
            )

        canary_failed = under_load(canary, 29000)
        rollback_failed = under_load(rolled_back, 29000)

        base = statistics.median(floor)
        print("serving abalone (HistGradientBoostingRegressor, 1 row per request, 1 instance):")
        print(f"  in-process predict, array (floor) p50 {base:6.2f} ms")
        print(f"  in-process predict, DataFrame    p50 {statistics.median(with_frame):6.2f} ms")
        frame_base = statistics.median(with_frame)
        for label, values in (
            ("through the gateway", gateway),
            ("straight to the instance", direct),
        ):
            p50 = statistics.median(values)
            p99 = sorted(values)[int(0.99 * (len(values) - 1))]
            print(
                f"  {label:<32} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  added at p50: "
                f"{p50 - frame_base:+5.2f} ms over the DataFrame predict "
                f"(target < 1 ms: {'met' if p50 - frame_base < 1 else 'NOT met'}), "
                f"{p50 - base:+5.2f} ms over the array predict"
            )
        print(f"  {CLIENTS} clients, through the gateway  {gateway_rps:7.0f} requests/s")
        print(f"  {CLIENTS} clients, straight             {direct_rps:7.0f} requests/s")
        print(
            f"  create of an approved version → in service: {to_service:.2f} s "
            f"(target < 3 s: {'met' if to_service < 3 else 'NOT met'})"
        )
        for label, (failed, total) in (
            ("a canary rollout (canary:20:3)", canary_failed),
            ("a rolled-back rollout (5xx canary)", rollback_failed),
        ):
            print(f"  failed requests during {label:<36} {failed} of {total} (target 0)")
    finally:
        subprocess.run([sys.executable, "-m", "lockgate", "down"], env=env, capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
