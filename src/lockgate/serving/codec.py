"""Request bodies in, predictions out: JSON and CSV, checked before the model sees them.

Accepted JSON: a list of rows (``[[1, 2], [3, 4]]``), one row (``[1, 2]``),
``{"instances": rows}`` or ``{"inputs": rows}``; a row may be an object keyed by feature name
when the model knows its feature names. CSV: one row per line, numbers only, an optional header
of the feature names. Out: a JSON array of predictions, or CSV with one prediction per line —
what the reference service's built-in containers answer.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Any

JSON = "application/json"
CSV = "text/csv"


@dataclass
class CodecError(Exception):
    """A request the model must not see: ``status`` is the HTTP status to answer."""

    status: int
    message: str

    def __str__(self) -> str:
        return self.message


def media_type(header: str | None, default: str = JSON) -> str:
    """``application/json; charset=utf-8`` → ``application/json``; ``*/*`` or none → ``default``."""
    if not header:
        return default
    first = header.split(",")[0].split(";")[0].strip().lower()
    return default if first in ("*/*", "") else first


def decode(
    body: bytes, content_type: str, features: list[str] | None, n_features: int | None
) -> list[list[float]]:
    """The rows of ``body`` as floats, each of the expected width."""
    if not body.strip():
        raise CodecError(400, "the request body is empty; send rows of features as JSON or CSV")
    if content_type == JSON:
        rows = _json_rows(body, features)
    elif content_type == CSV:
        rows = _csv_rows(body, features)
    else:
        raise CodecError(
            415, f"content type {content_type!r} is not supported; use {JSON} or {CSV}"
        )
    width = len(features) if features else n_features
    for i, row in enumerate(rows):
        if width is not None and len(row) != width:
            expected = f"{width} features" + (f" ({', '.join(features)})" if features else "")
            raise CodecError(400, f"row {i} has {len(row)} values; the model expects {expected}")
        for j, value in enumerate(row):
            if not math.isfinite(value):
                raise CodecError(400, f"row {i}, column {j}: {value} is not a finite number")
    return rows


def _json_rows(body: bytes, features: list[str] | None) -> list[list[float]]:
    try:
        doc = json.loads(body, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CodecError(400, f"malformed JSON: {exc}") from None
    if isinstance(doc, dict):
        key = next((k for k in ("instances", "inputs") if k in doc), None)
        if key is None:
            raise CodecError(400, 'a JSON object must hold the rows under "instances" or "inputs"')
        doc = doc[key]
    if not isinstance(doc, list) or not doc:
        raise CodecError(400, "send a non-empty list of rows (or one row)")
    if not isinstance(doc[0], (list, dict)):
        doc = [doc]
    return [_row(i, item, features) for i, item in enumerate(doc)]


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _row(i: int, item: Any, features: list[str] | None) -> list[float]:
    if isinstance(item, dict):
        if not features:
            raise CodecError(
                400, f"row {i} is an object, but the model has no feature names; send a list"
            )
        missing = [f for f in features if f not in item]
        extra = sorted(set(item) - set(features))
        if missing or extra:
            raise CodecError(
                400,
                f"row {i}: "
                + "; ".join(
                    part
                    for part in (
                        f"missing {', '.join(missing)}" if missing else "",
                        f"unknown {', '.join(extra)}" if extra else "",
                    )
                    if part
                ),
            )
        item = [item[f] for f in features]
    if not isinstance(item, list):
        raise CodecError(400, f"row {i} is not a list of numbers")
    return [_number(i, j, v) for j, v in enumerate(item)]


def _number(i: int, j: int, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CodecError(400, f"row {i}, column {j}: {value!r} is not a number")
    return float(value)


def _csv_rows(body: bytes, features: list[str] | None) -> list[list[float]]:
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise CodecError(400, "the CSV body is not UTF-8 text") from None
    lines = [line for line in csv.reader(io.StringIO(text)) if line]
    if lines and features and [c.strip() for c in lines[0]] == features:
        lines = lines[1:]  # a header of the feature names
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append([float(cell) for cell in line])
        except ValueError:
            raise CodecError(
                400, f"CSV line {i + 1} has a value that is not a number: {line}"
            ) from None
    if not rows:
        raise CodecError(400, "the CSV body has no rows")
    return rows


def encode(predictions: Any, accept: str) -> tuple[bytes, str]:
    """``predictions`` (a list or array) as ``accept`` asks."""
    values = predictions.tolist() if hasattr(predictions, "tolist") else list(predictions)
    if accept == JSON:
        return json.dumps(values).encode(), JSON
    if accept == CSV:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for value in values:
            writer.writerow(value if isinstance(value, list) else [value])
        return out.getvalue().encode(), CSV
    raise CodecError(406, f"cannot answer in {accept!r}; accept {JSON} or {CSV}")
