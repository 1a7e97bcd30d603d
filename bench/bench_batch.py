"""Batch inference rows per second against a plain in-process ``predict`` over the same rows.

The abalone model (HistGradientBoostingRegressor) over ``--rows`` rows (the data set repeated)
in a CSV file: a Lockgate batch job (``--workers`` processes, parts of ``--part-rows`` rows,
reading, predicting and writing every part, with the job recorded in the store), beside one
process that reads the same CSV, predicts every row with all cores and writes the result (the
floor). Target: at least 0.8× the floor's rows per second. Timings inform; they never fail
anything. Usage: ``python bench/bench_batch.py [--rows N] [--workers N]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from lockgate.auth.principal import local_principal
from lockgate.config.home import Home
from lockgate.infra import service as infra
from lockgate.infra.bootstrap import init
from lockgate.platform import Platform
from lockgate.registry import service as registry
from lockgate.serving import batch_service

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingRegressor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--part-rows", type=int, default=50_000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "examples" / "abalone"))
    from features import one_hot_sex

    from lockgate.pipelines.types import Model

    workdir = Path(tempfile.mkdtemp(prefix="lockgate-bench-batch-"))
    try:
        frame = one_hot_sex(pd.read_csv(ROOT / "examples" / "abalone" / "data" / "abalone.csv"))
        features = frame.drop(columns=["rings"])
        estimator = HistGradientBoostingRegressor(max_iter=100, random_state=0)
        estimator.fit(features, frame["rings"])
        folder = workdir / "model"
        folder.mkdir()
        Model(folder).save(estimator)
        repeats = -(-args.rows // len(features))
        rows = pd.concat([features] * repeats, ignore_index=True).iloc[: args.rows]
        source = workdir / "rows.csv"
        rows.to_csv(source, index=False)

        start = time.perf_counter()
        floor_frame = pd.read_csv(source)
        floor_frame["prediction"] = estimator.predict(floor_frame)
        floor_frame.to_csv(workdir / "floor.csv", index=False)
        floor_s = time.perf_counter() - start

        me = local_principal()
        home = Home(workdir / "home")
        init(home, me, org="bench", environments=["dev"])
        home.platform_file.write_text(
            home.platform_file.read_text().replace(
                "allow_self_approval = false", "allow_self_approval = true"
            )
        )
        platform = Platform.open(home)
        infra.apply(platform, me, confirm=lambda plan: True)
        ref = registry.register(platform, me, folder, "abalone").ref
        registry.set_status(platform, me, ref, registry.APPROVED)
        start = time.perf_counter()
        job = batch_service.start(
            platform,
            me,
            ref,
            str(source),
            str(workdir / "out"),
            workers=args.workers,
            part_rows=args.part_rows,
        )
        done = batch_service.drive(platform, me, job.id)
        job_s = time.perf_counter() - start
        assert done.status == "succeeded", done.error

        floor_rate, job_rate = args.rows / floor_s, args.rows / job_s
        print(f"batch inference, abalone, {args.rows:,} rows of CSV:")
        print(f"  one process: read, predict (all cores), write   {floor_rate:10,.0f} rows/s")
        print(
            f"  batch job, {args.workers} workers, {job.parts} parts            {job_rate:10,.0f} rows/s"
            f"   ratio {job_rate / floor_rate:4.2f}× (target ≥ 0.8×: {'met' if job_rate >= 0.8 * floor_rate else 'NOT met'})"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
