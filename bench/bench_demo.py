"""The golden path (``lockgate demo``) end to end, against the same ML work as plain calls.

``lockgate demo`` in a fresh home, as a user runs it: init, infra apply, the daemon, a
build-train-deploy project, a push, the CI build (unit tests, the pipeline: preprocess, train,
evaluate, register), an approval, the preprod deploy (promotion, endpoint, endpoint tests, batch
job, schedule), the gated prod deploy, and a prediction from prod; then ``lockgate down``. The
baseline is the ML alone in one process: read the CSV, one-hot, split, fit, evaluate, predict
one row. Target: the golden path under 60 s on this machine. Timings inform; they never fail
anything. Usage: ``python bench/bench_demo.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCKGATE = str(Path(sys.executable).with_name("lockgate"))
TARGET_S = 60.0


def baseline() -> float:
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.metrics import mean_squared_error

    sys.path.insert(0, str(ROOT / "examples" / "abalone"))
    from features import one_hot_sex, split

    start = time.perf_counter()
    frame = one_hot_sex(pd.read_csv(ROOT / "examples" / "abalone" / "data" / "abalone.csv"))
    parts = split(frame, 42)
    model = HistGradientBoostingRegressor(max_iter=100, random_state=42)
    model.fit(parts["train"].drop(columns=["rings"]), parts["train"]["rings"])
    test = parts["test"]
    mean_squared_error(test["rings"], model.predict(test.drop(columns=["rings"])))
    model.predict(test.drop(columns=["rings"]).iloc[:1])
    return time.perf_counter() - start


def golden_path() -> tuple[float, dict[str, float]]:
    home = Path(tempfile.mkdtemp(prefix="lockgate-bench-demo-"))
    env = {**os.environ, "LOCKGATE_HOME": str(home)}
    try:
        start = time.perf_counter()
        done = subprocess.run(
            [LOCKGATE, "demo", "--json"], env=env, capture_output=True, text=True, check=False
        )
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"lockgate demo failed:\n{done.stdout}\n{done.stderr}")
        return elapsed, json.loads(done.stdout)["seconds"]
    finally:
        subprocess.run([LOCKGATE, "down"], env=env, capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    floor = statistics.median(baseline() for _ in range(3))
    times = []
    for _ in range(args.runs):
        elapsed, stages = golden_path()
        times.append(elapsed)
        print("  stages (s since start): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    took = statistics.median(times)
    print(f"golden path (lockgate demo, fresh home): {took:.1f} s (median of {len(times)})")
    print(f"baseline (the same ML as plain calls in one process): {floor:.2f} s")
    print(
        f"ratio: {took / floor:.0f}× the bare ML; target under {TARGET_S:.0f} s: "
        f"{'met' if took < TARGET_S else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
