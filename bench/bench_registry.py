"""Model registry speed on a temporary home (SQLite): register, approve and list 1,000 versions.

Each figure is a median per operation (register and approve are whole service calls: policy
check, transaction, event and audit entry), beside a plain SQLite insert of a similar row as the
floor. Timings inform; they never fail anything. Usage: ``python bench/bench_registry.py [--n N]``.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from lockgate.auth.principal import local_principal
from lockgate.config.home import Home
from lockgate.infra.bootstrap import init
from lockgate.platform import Platform
from lockgate.registry import service as registry

DIGEST = "sha256:" + "0" * 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lockgate-bench-registry-"))
    try:
        me = local_principal()
        init(Home(workdir / "home"), me, org="bench", environments=["dev"])
        platform = Platform.open(Home(workdir / "home"))
        env = platform.ready()
        register_ms, approve_ms = [], []
        for i in range(args.n):
            start = time.perf_counter()
            with env.store.transaction() as session:
                registry.register_version(
                    session,
                    group="bench",
                    model_digest=DIGEST,
                    metrics={"mse": 4.0 + i / args.n},
                    lineage={},
                    by="user:someone-else",
                )
            register_ms.append((time.perf_counter() - start) * 1000)
        for i in range(1, args.n + 1):
            start = time.perf_counter()
            registry.set_status(platform, me, f"bench/{i}", registry.APPROVED)
            approve_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        listed = registry.versions(platform, me, "bench")
        list_ms = (time.perf_counter() - start) * 1000
        assert len(listed) == args.n

        floor = sqlite3.connect(workdir / "floor.db", isolation_level=None)
        floor.execute("PRAGMA journal_mode=WAL")
        floor.execute(
            "CREATE TABLE v (g TEXT, n INTEGER, digest TEXT, metrics TEXT, PRIMARY KEY (g, n))"
        )
        floor_ms = []
        for i in range(args.n):
            start = time.perf_counter()
            floor.execute("BEGIN IMMEDIATE")
            floor.execute("INSERT INTO v VALUES ('bench', ?, ?, '{}')", (i, DIGEST))
            floor.execute("COMMIT")
            floor_ms.append((time.perf_counter() - start) * 1000)
        floor.close()

        base = statistics.median(floor_ms)
        print(f"registry, {args.n} versions in one group (median per operation):")
        for label, values in (
            ("register (store layer, with its event)", register_ms),
            ("approve (service: policy, event, audit)", approve_ms),
        ):
            median = statistics.median(values)
            print(
                f"  {label:42} {median:7.2f} ms   {median / base:6.1f}× a plain SQLite insert ({base:.2f} ms)"
            )
        print(f"  {'list the whole group':42} {list_ms:7.2f} ms")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
