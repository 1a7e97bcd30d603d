"""Built-in step code that runs in a step process like user code (batch transform)."""

from __future__ import annotations

import os

from lockgate.pipelines.types import Dataset, Model

#: Rows per part of a transform (parts run in parallel, one worker per core at most).
PART_ROWS = 10_000


def batch_transform(
    model: Model, data: Dataset, input_file: str = "data.csv", drop: list[str] | None = None
) -> Dataset:
    """Predict every row of ``data``'s ``input_file`` with the batch-inference engine; the
    output Dataset holds ``predictions.csv`` (the input columns plus ``prediction``)."""
    import pandas as pd

    from lockgate.serving import batch

    parts, fmt = batch.plan(str(data.file(input_file)), PART_ROWS)
    out: Dataset = Dataset.new()
    scratch = out.path / ".parts"
    written: dict[int, str] = {}
    batch.run_parts(
        model.path,
        list(enumerate(parts)),
        fmt,
        str(scratch),
        min(len(parts), os.cpu_count() or 1),
        lambda index, target, seconds: written.__setitem__(index, target),
        drop=tuple(drop or []),
    )
    frames = [
        batch.read_part(batch.PartSpec(written[i], 0, parts[i].rows), fmt) for i in sorted(written)
    ]
    out.write_csv(pd.concat(frames, ignore_index=True), "predictions.csv")
    for target in written.values():
        os.remove(target)
    os.rmdir(scratch)
    return out
