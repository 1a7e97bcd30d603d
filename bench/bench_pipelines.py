"""Orchestration overhead of whole pipeline executions (orchestrator + executor + store).

Measured on a temporary platform home (SQLite, local files), with no-op steps, so the time is the
platform's own:

* a chain of 10 steps and a fan-out of 50 (``max_parallel`` 2), per step, against calling the
  same function in one process (the floor);
* a cached chain of 10 (every step a cache hit), per step: the cost of a cache lookup;
* ``lockgate pipeline run two-steps`` as a whole command, from start to done.

Each figure is the median of ``--repeat`` runs. Timings inform; they never fail anything.
Usage: ``python bench/bench_pipelines.py [--repeat N] [--json]``.
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

from lockgate.auth.principal import local_principal
from lockgate.config.home import Home
from lockgate.infra.bootstrap import init
from lockgate.pipelines import service
from lockgate.platform import Platform

PROJECT = Path(__file__).parent / "projects" / "noop"
TARGET_MS, AIM_MS, FIXED_TARGET_S, CACHE_TARGET_MS = 150.0, 50.0, 0.5, 10.0


def _execute(platform: Platform, ref: str) -> float:
    me = local_principal()
    start = time.perf_counter()
    execution = service.start(platform, me, ref, {})
    final = service.drive(platform, me, execution.id, parallel=2)
    elapsed = time.perf_counter() - start
    if final.status != "succeeded":
        sys.exit(f"{ref} did not succeed: {final.reason}")
    return elapsed


def _in_process(calls: int) -> float:
    from flows import noop  # type: ignore[import-not-found]

    start = time.perf_counter()
    value = 0
    for _ in range(calls):
        value = noop.fn(value)
    return time.perf_counter() - start


def _cache_lookup_ms(platform: Platform, lookups: int = 200) -> float:
    """The median time of one cache lookup as the orchestrator does it."""
    from lockgate.store import pipelines as db

    env = platform.env(platform.env_names[0])
    with env.store.transaction() as s:
        [execution] = db.list_executions(s, "cached-chain", 1)
        keys = [r.cache_key for r in db.step_runs(s, execution.id).values() if r.cache_key]
    times = []
    for i in range(lookups):
        start = time.perf_counter()
        with env.store.transaction() as s:
            entry = db.get_cache_entry(s, keys[i % len(keys)])
        assert entry is not None and entry["output_digest"]
        env.artifacts.get_bytes(entry["output_digest"])
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lockgate-bench-"))
    try:
        home = Home(workdir / "home")
        project = workdir / "noop"
        shutil.copytree(PROJECT, project)
        sys.path.insert(0, str(project))
        me = local_principal()
        init(home, me, org="bench", environments=["dev"])
        platform = Platform.open(home)
        for name in ("chain", "fanout", "cached-chain", "two-steps"):
            service.upsert(platform, me, f"{project}/flows.py:{name.replace('-', '_')}")
        _execute(platform, "cached-chain")  # fill the cache
        rows: dict[str, dict[str, float]] = {}
        floor = statistics.median(_in_process(10) for _ in range(args.repeat)) / 10
        rows["in-process call (floor)"] = {"per_step_ms": floor * 1000}
        for label, ref, steps in (
            ("chain of 10", "chain", 10),
            ("fan-out of 50", "fanout", 50),
            ("cached chain of 10", "cached-chain", 10),
        ):
            total = statistics.median(_execute(platform, ref) for _ in range(args.repeat))
            rows[label] = {"per_step_ms": total / steps * 1000, "total_s": total}
        rows["cache lookup (key → entry → blob check)"] = {
            "per_step_ms": _cache_lookup_ms(platform)
        }
        env = {**os.environ, "LOCKGATE_HOME": str(home.root)}
        cli = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "lockgate", "pipeline", "run", "two-steps"],
                env=env,
                check=True,
                capture_output=True,
            )
            cli.append(time.perf_counter() - start)
        rows["`lockgate pipeline run` 2 steps"] = {"total_s": statistics.median(cli)}
        if args.json:
            print(json.dumps(rows, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Pipeline orchestration (median of {args.repeat})")
        for column in ("what", "per step ms", "total s", "× in-process"):
            table.add_column(column, justify="right" if column != "what" else "left")
        for label, row in rows.items():
            per = row.get("per_step_ms")
            table.add_row(
                label,
                f"{per:.2f}" if per is not None else "",
                f"{row['total_s']:.3f}" if "total_s" in row else "",
                f"{per / rows['in-process call (floor)']['per_step_ms']:.0f}" if per else "",
            )
        console = Console()
        console.print(table)
        chain_ms = rows["chain of 10"]["per_step_ms"]
        console.print(
            f"target: ≤ {TARGET_MS:.0f} ms per step (aim {AIM_MS:.0f}): chain {chain_ms:.1f} ms, fan-out {rows['fan-out of 50']['per_step_ms']:.1f} ms — {'PASS' if chain_ms <= TARGET_MS else 'MISS'}"
        )
        lookup = rows["cache lookup (key → entry → blob check)"]["per_step_ms"]
        console.print(
            f"target: a cache lookup ≤ {CACHE_TARGET_MS:.0f} ms: {lookup:.2f} ms — {'PASS' if lookup <= CACHE_TARGET_MS else 'MISS'} (a whole cached step, with its bookkeeping: {rows['cached chain of 10']['per_step_ms']:.1f} ms)"
        )
        two = rows["`lockgate pipeline run` 2 steps"]["total_s"]
        console.print(
            f"target: a 2-step `lockgate pipeline run` ≤ {FIXED_TARGET_S} s: {two:.2f} s — {'PASS' if two <= FIXED_TARGET_S else 'MISS'}"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
