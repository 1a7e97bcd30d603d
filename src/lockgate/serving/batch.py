"""Batch inference: a model over every row of an input, split into parts run by worker processes.

The input is a file or a folder of files — CSV (with a header), JSON lines (one object per
line) or Parquet — on a local path or any fsspec URL. It is cut into parts of ``part_rows``
rows; each part is predicted by one of ``workers`` processes (each loads the model once, with
its share of the cores) and written to the output folder as ``part-NNNNN.<format>``: the input
columns plus ``prediction``, written under a temporary name and renamed. A part is marked done in
the store only once its file is in place, so a job killed halfway resumes with the parts it had
not finished, and nothing is done twice. The model bytes are read back with their digests
verified before any worker loads them. A finished job writes ``_SUCCESS`` (JSON) beside its parts.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockgate.errors import ValidationError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
PART_ROWS = 10_000


@dataclass(frozen=True)
class PartSpec:
    source: str
    first_row: int
    rows: int
    #: Where the part's first line starts (CSV, JSON lines): a worker seeks there instead of
    #: reading every line before it.
    byte_offset: int | None = None


def _fs(uri: str) -> tuple[Any, str]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ValueError, ImportError) as exc:  # an unknown scheme, or its driver missing
        raise ValidationError(
            f"cannot open {uri}: {exc}",
            hint="Give a local path, a file:// URL, or s3://… with lockgate[s3] installed.",
        ) from exc
    return fs, path


def input_files(uri: str) -> tuple[list[str], str]:
    """The files of input ``uri`` (sorted) and their format; a clear error for a bad input."""
    fs, path = _fs(uri)
    if not fs.exists(path):
        raise ValidationError(f"the input {uri} does not exist.")
    if fs.isdir(path):
        files = sorted(p for p in fs.find(path) if Path(p).suffix in FORMATS)
        if not files:
            raise ValidationError(f"the input folder {uri} has no {', '.join(FORMATS)} files.")
    else:
        files = [path]
    formats = {FORMATS.get(Path(f).suffix) for f in files}
    if None in formats or len(formats) != 1:
        raise ValidationError(
            f"the input {uri} must be files of one format: {', '.join(FORMATS)}.",
            hint="Give a .csv, .jsonl or .parquet file, or a folder of one kind.",
        )
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    prefix = "" if protocol in ("file", "local") else f"{protocol}://"
    return [prefix + f for f in files], formats.pop() or "csv"


def plan(uri: str, part_rows: int = PART_ROWS) -> tuple[list[PartSpec], str]:
    """Cut the input into parts of at most ``part_rows`` rows (one pass over each file)."""
    files, fmt = input_files(uri)
    parts: list[PartSpec] = []
    for source in files:
        if fmt == "parquet":
            total = _parquet_rows(source)
            parts.extend(
                PartSpec(source, first, min(part_rows, total - first))
                for first in range(0, total, part_rows)
            )
        else:
            parts.extend(_line_parts(source, fmt, part_rows))
    if not parts:
        raise ValidationError(f"the input {uri} has no rows.")
    return parts, fmt


def _parquet_rows(source: str) -> int:
    import pyarrow.parquet as pq

    fs, path = _fs(source)
    with fs.open(path, "rb") as handle:
        return int(pq.ParquetFile(handle).metadata.num_rows)


def _line_parts(source: str, fmt: str, part_rows: int) -> list[PartSpec]:
    fs, path = _fs(source)
    parts: list[PartSpec] = []
    with fs.open(path, "rb") as handle:
        if fmt == "csv":
            handle.readline()  # the header
        position, row, start, start_row = handle.tell(), 0, handle.tell(), 0
        for line in handle:
            if line.strip():
                if row - start_row == part_rows:
                    parts.append(PartSpec(source, start_row, part_rows, start))
                    start, start_row = position, row
                row += 1
            position += len(line)
        if row > start_row:
            parts.append(PartSpec(source, start_row, row - start_row, start))
    return parts


def read_part(part: PartSpec, fmt: str) -> Any:
    import io

    import pandas as pd

    fs, path = _fs(part.source)
    with fs.open(path, "rb") as handle:
        if fmt == "parquet":
            frame = pd.read_parquet(handle)
            return frame.iloc[part.first_row : part.first_row + part.rows].reset_index(drop=True)
        header = handle.readline() if fmt == "csv" else b""
        skip = 0
        if part.byte_offset is not None:
            handle.seek(part.byte_offset)
        else:
            skip = part.first_row  # no offset known: step over the rows before the part
        lines: list[bytes] = []
        while len(lines) < part.rows:
            line = handle.readline()
            if not line:
                break
            if line.strip():
                if skip:
                    skip -= 1
                else:
                    lines.append(line)
    if fmt == "csv":
        return pd.read_csv(io.BytesIO(header + b"".join(lines)))
    return pd.DataFrame([json.loads(line) for line in lines])


def write_part(frame: Any, output_uri: str, index: int, fmt: str) -> str:
    fs, folder = _fs(output_uri)
    fs.makedirs(folder, exist_ok=True)
    target = f"{folder}/part-{index:05d}.{fmt}"
    tmp = f"{target}.{os.getpid()}.tmp"
    with fs.open(tmp, "wb") as handle:
        if fmt == "csv":
            frame.to_csv(handle, index=False)
        elif fmt == "jsonl":
            handle.write(frame.to_json(orient="records", lines=True).encode())
        else:
            frame.to_parquet(handle, index=False)
    fs.mv(tmp, target)
    return target


# --- in the worker processes ------------------------------------------------------------------

_predictor: Any = None
_features: list[str] | None = None


def _load(model_dir: str, threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)  # before the numeric libraries start
    global _predictor, _features
    from lockgate.serving import formats

    _predictor = formats.load(Path(model_dir))  # a `command` package cannot run in batch
    _features = _predictor.manifest.features


def _run_part(
    index: int, part: PartSpec, fmt: str, output_uri: str, drop: tuple[str, ...] = ()
) -> tuple[int, str, float]:
    start = time.perf_counter()
    frame = read_part(part, fmt)
    if drop:
        inputs = frame.drop(columns=[c for c in drop if c in frame.columns])
    elif _features:
        missing = [f for f in _features if f not in frame.columns]
        if missing:
            raise ValidationError(
                f"{part.source} has no column {', '.join(missing)} (the model's features: {', '.join(_features)})."
            )
        inputs = frame[_features]
    else:
        inputs = frame
    result = frame.copy()
    result["prediction"] = list(_predictor.predict(inputs))
    target = write_part(result, output_uri, index, fmt)
    return index, target, time.perf_counter() - start


def run_parts(
    model_dir: Path,
    todo: list[tuple[int, PartSpec]],
    fmt: str,
    output_uri: str,
    workers: int,
    on_done: Callable[[int, str, float], None],
    *,
    drop: tuple[str, ...] = (),
) -> None:
    """Predict ``todo`` with ``workers`` processes; ``on_done`` as each part's file is in place.

    ``drop`` names input columns the model must not see (e.g. the label), for a model that does
    not record its feature names."""
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_load,
        initargs=(str(model_dir), threads),
    ) as pool:
        pending: set[Future[tuple[int, str, float]]] = {
            pool.submit(_run_part, index, part, fmt, output_uri, drop) for index, part in todo
        }
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index, target, seconds = future.result()  # a failed part fails the job
                    on_done(index, target, seconds)
        except BaseException:
            for future in pending:
                future.cancel()  # what had not started never starts; the finished parts stay done
            raise
