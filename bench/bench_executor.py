"""Per-step orchestration overhead of the local executor (no orchestrator, no database).

The same no-op step function is run:

* in-process, a plain call: the floor;
* in a fresh interpreter per step (``python -m lockgate.pipelines.runtime TASK``): what a
  runner that starts a new Python process for every step pays;
* through :class:`LocalExecutor`, forked from its warm fork server: a chain of 10 steps one
  after the other, and a fan-out of 50 steps with ``max_parallel=2``.

For each it prints the median milliseconds per step and the ratio against the in-process call
and against the fresh interpreter. Executor rows count everything from ``submit`` to the result
being reported (fork, runtime set-up, import of the step module, result file with fsync, exit,
reaping); "json" rows also store the step's return value as a blob. The first step of a new
executor, which waits for the fork server to start, is shown on its own line.

Usage: ``python bench/bench_executor.py [--repeat N] [--json]``. Timings never fail anything.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lockgate.pipelines.executors.local import LocalExecutor
from lockgate.pipelines.task import StepTask

TARGET_MS = 150.0  # the bound per step
AIM_MS = 50.0
STEPS_MODULE = "def noop():\n    return None\n\n\ndef noop_json():\n    return {'ok': True}\n"


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.code = root / "code"
        self.code.mkdir()
        (self.code / "noop_steps.py").write_text(STEPS_MODULE)
        self.count = 0

    def task(self, function: str = "noop") -> StepTask:
        self.count += 1
        attempt = self.root / "exec" / f"s{self.count}"
        return StepTask(
            execution_id="bench",
            step=f"s{self.count}",
            attempt=1,
            module="noop_steps",
            qualname=function,
            code_dir=str(self.code),
            artifact_url=f"file://{self.root}/artifacts",
            workdir=str(attempt / "work"),
            log_path=str(attempt / "step.log"),
            result_path=str(attempt / "result.json"),
            output_type="none" if function == "noop" else "json",
        )


def wait_for(executor: LocalExecutor, count: int) -> None:
    done = 0
    while done < count:
        for _handle, result in executor.wait(1.0):
            if not result.ok:
                sys.exit(f"a benchmark step failed: {result.error}")
            done += 1


def in_process_ms() -> float:
    namespace: dict[str, Any] = {}
    exec(compile(STEPS_MODULE, "noop_steps", "exec"), namespace)  # the same function body
    noop = namespace["noop"]
    calls = 10_000
    start = time.perf_counter()
    for _ in range(calls):
        noop()
    return (time.perf_counter() - start) * 1000 / calls


def fresh_process_ms(bench: Bench, runs: int) -> float:
    times = []
    for _ in range(runs):
        task = bench.task()
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "lockgate.pipelines.runtime", json.dumps(task.to_dict())],
            check=True,
        )
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def chain_ms(executor: LocalExecutor, bench: Bench, function: str, steps: int = 10) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        executor.submit(bench.task(function))
        wait_for(executor, 1)
        times.append((time.perf_counter() - start) * 1000)
    return times


def fan_out_ms(bench: Bench, steps: int = 50, parallel: int = 2) -> float:
    """Wall time per step of ``steps`` no-op steps, ``parallel`` at a time, on a warm executor."""
    with LocalExecutor(max_parallel=parallel) as executor:
        chain_ms(executor, bench, "noop", steps=1)  # the fork server is up
        start = time.perf_counter()
        submitted = done = 0
        while done < steps:
            while submitted < steps and executor.running() < executor.max_parallel:
                executor.submit(bench.task())
                submitted += 1
            for _handle, result in executor.wait(1.0):
                if not result.ok:
                    sys.exit(f"a benchmark step failed: {result.error}")
                done += 1
        return (time.perf_counter() - start) * 1000 / steps


def measure(repeat: int) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="lockgate-bench-executor-"))
    try:
        bench = Bench(root)
        first, chain_none, chain_json, fan = [], [], [], []
        for _ in range(repeat):
            start = time.perf_counter()
            with LocalExecutor(max_parallel=2) as executor:
                executor.submit(bench.task())
                wait_for(executor, 1)
                first.append((time.perf_counter() - start) * 1000)
                chain_none += chain_ms(executor, bench, "noop")
                chain_json += chain_ms(executor, bench, "noop_json")
            fan.append(fan_out_ms(bench))
        return {
            "in_process_ms": in_process_ms(),
            "fresh_process_ms": fresh_process_ms(bench, runs=max(5, repeat)),
            "chain10_none_ms": statistics.median(chain_none),
            "chain10_json_ms": statistics.median(chain_json),
            "fanout50_none_ms": statistics.median(fan),
            "first_step_ms": statistics.median(first),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(results: dict[str, float]) -> None:
    floor, fresh = results["in_process_ms"], results["fresh_process_ms"]
    rows = [
        ("in-process call (the floor)", "in_process_ms"),
        ("fresh interpreter per step", "fresh_process_ms"),
        ("executor: chain of 10, output none", "chain10_none_ms"),
        ("executor: chain of 10, output json", "chain10_json_ms"),
        ("executor: fan-out of 50, max_parallel=2", "fanout50_none_ms"),
        ("executor: first step, incl. fork server start", "first_step_ms"),
    ]
    print(f"{'per step (median)':<48}{'ms':>10}{'× in-process':>15}{'× fresh proc':>14}")
    for label, key in rows:
        value = results[key]
        print(f"{label:<48}{value:>10.4g}{value / floor:>15,.0f}{value / fresh:>14.2f}")
    worst = max(results["chain10_none_ms"], results["fanout50_none_ms"])
    verdict = "PASS" if worst <= TARGET_MS else "MISS"
    aim = "under" if worst < AIM_MS else "over"
    print(
        f"\nissue target ≤ {TARGET_MS:.0f} ms per step: {verdict} "
        f"({worst:.1f} ms, {aim} the {AIM_MS:.0f} ms aim)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each scenario")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    results = measure(args.repeat)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results)


if __name__ == "__main__":
    main()
