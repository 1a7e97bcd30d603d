"""Start-up benchmark for the ``lockgate`` command line.

Times whole processes (``time.perf_counter`` around ``subprocess.run``): one warm-up run of
each command, then the median, min and max of ``--runs`` timed runs, next to ``python -c pass``
as the floor. It checks the issue's target (``lockgate --help`` under 0.3 s) but only reports it:
a slow run never makes this exit non-zero. Then ``python -X importtime -m lockgate --help`` is
run once to list the slowest imports, so that a lost lazy import shows up.

Usage: ``python bench/run.py [--runs N] [--json] [--module]``. See bench/README.md.
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

from rich.console import Console
from rich.table import Table

HELP_TARGET_MS = 300.0
ImportRow = tuple[str, float, float]  # module, cumulative ms, self ms
HEAVY = ("sqlalchemy", "alembic", "pydantic", "cryptography", "fsspec", "psycopg", "markdown_it")


def run_checked(cmd: list[str], env: dict[str, str]) -> float:
    """Run ``cmd`` once, return its wall time in seconds; a failing command is an error."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed ({proc.returncode}): {cmd}\n{proc.stderr}")
    return elapsed


def measure(cmd: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    """One warm-up run (bytecode and page caches), then ``runs`` timed ones; in ms."""
    run_checked(cmd, env)
    ms = [run_checked(cmd, env) * 1000 for _ in range(runs)]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms)}


def import_times(env: dict[str, str], top: int) -> tuple[list[ImportRow], list[str]]:
    """The ``top`` imports of ``--help`` by cumulative time, and which HEAVY packages loaded."""
    cmd = [sys.executable, "-X", "importtime", "-m", "lockgate", "--help"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    rows: list[ImportRow] = []
    for line in proc.stderr.splitlines():  # "import time: self [us] | cumulative | package"
        fields = line.removeprefix("import time:").split("|")
        if line.startswith("import time:") and fields[0].strip().isdigit():
            rows.append((fields[2].strip(), int(fields[1]) / 1000, int(fields[0]) / 1000))
    loaded = {row[0].split(".")[0] for row in rows}
    rows.sort(key=lambda row: row[1], reverse=True)
    return rows[:top], [pkg for pkg in HEAVY if pkg in loaded]


def make_home(lockgate: list[str], env: dict[str, str]) -> Path:
    """A throw-away platform home: ``lockgate init`` then ``lockgate infra apply``."""
    home = Path(tempfile.mkdtemp(prefix="lockgate-bench-")) / "home"
    run_checked([*lockgate, "init", "--home", str(home), "--org", "bench"], env)
    run_checked([*lockgate, "infra", "apply", "--home", str(home), "--yes"], env)
    return home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command (15)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--module", action="store_true", help="run `python -m lockgate`")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    py = sys.executable
    script = Path(py).parent / "lockgate"
    use_script = script.exists() and not args.module
    lockgate = [str(script)] if use_script else [py, "-m", "lockgate"]
    runner = str(script) if use_script else f"{py} -m lockgate"

    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    home = make_home(lockgate, env)
    try:
        home_env = {**env, "LOCKGATE_HOME": str(home)}
        cases: list[tuple[str, list[str], dict[str, str]]] = [
            ("python -c pass", [py, "-c", "pass"], env),
            ("import lockgate.cli.main", [py, "-c", "import lockgate.cli.main"], env),
            ("lockgate --help", [*lockgate, "--help"], env),
            ("lockgate status", [*lockgate, "status"], home_env),
            (
                "lockgate param get",
                [*lockgate, "param", "get", "/lockgate/dev/data/bucket"],
                home_env,
            ),
        ]
        results = {name: measure(cmd, cenv, args.runs) for name, cmd, cenv in cases}
        top, heavy = import_times(env, top=8)
    finally:
        shutil.rmtree(home.parent, ignore_errors=True)

    floor = results["python -c pass"]["median_ms"]
    for r in results.values():
        r["ratio"] = r["median_ms"] / floor
    help_ms = results["lockgate --help"]["median_ms"]
    verdict = "PASS" if help_ms < HELP_TARGET_MS else "MISS"

    if args.json:
        report = {
            "python": py,
            "runner": runner,
            "runs": args.runs,
            "results": results,
            "target": {
                "command": "lockgate --help",
                "limit_ms": HELP_TARGET_MS,
                "median_ms": help_ms,
                "verdict": verdict,
            },
            "help_imports": [{"module": m, "cumulative_ms": c, "self_ms": s} for m, c, s in top],
            "heavy_loaded_by_help": heavy,
        }
        print(json.dumps(report, indent=2))
        return

    console = Console()
    console.print(f"python: {py}\nlockgate runs as: {runner}\nruns: {args.runs} (+1 warm-up)")
    table = Table(title="Process wall time (ms)")
    for col in ("command", "median", "min", "max", "× floor"):
        table.add_column(col, justify="left" if col == "command" else "right")
    for name, r in results.items():
        ms = [f"{r[k]:.1f}" for k in ("median_ms", "min_ms", "max_ms")]
        table.add_row(name, *ms, f"{r['ratio']:.2f}")
    console.print(table)
    target = f"`lockgate --help` under {HELP_TARGET_MS / 1000:g} s"
    console.print(f"target {target}: {verdict} (median {help_ms / 1000:.3f} s)")

    imports = Table(title="Top imports: lockgate --help")
    for col in ("module", "cumulative ms", "self ms"):
        imports.add_column(col, justify="left" if col == "module" else "right")
    for module, cumulative, self_ms in top:
        imports.add_row(module, f"{cumulative:.1f}", f"{self_ms:.1f}")
    console.print(imports)
    console.print(f"heavy packages imported by --help: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
