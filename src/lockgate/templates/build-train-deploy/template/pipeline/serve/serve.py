"""The model's own server (bring your own container).

The endpoint starts it in the model folder as ``python serve.py`` (the train step copies this
file there and writes a ``command`` manifest), with the contract every serving container
follows: listen on 127.0.0.1:$SAGEMAKER_BIND_TO_PORT and serve the model in $SM_MODEL_DIR.

    GET  /ping          200 once the model is loaded (it loads before the port opens)
    POST /invocations   rows as JSON or CSV → a JSON array of predictions (CSV, one per line,
                        with Accept: text/csv)

It accepts and answers what Lockgate's built-in server does, so clients and ``lockgate ci test``
need not know which one serves. JSON: a list of rows ``[[...], ...]``, one row ``[...]``, or
``{"instances": rows}`` / ``{"inputs": rows}``, a row being a list in the training column order
or an object keyed by column name. CSV: one row per line, an optional header of the column names.

Standard library only, besides joblib and the model's own libraries: change it freely (add
pre- or post-processing here), and run tests/unit/test_serve.py.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

JSON = "application/json"
CSV = "text/csv"
MODEL_FILE = "model.joblib"
MAX_BODY_BYTES = 6 * 1024 * 1024


class BadRequest(Exception):
    """A request the model must not see; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Model:
    """The estimator in ``model_dir``, with the column names it was trained on."""

    def __init__(self, model_dir: Path) -> None:
        import joblib

        self.estimator = joblib.load(model_dir / MODEL_FILE)
        names = getattr(self.estimator, "feature_names_in_", None)
        self.features = [str(n) for n in names] if names is not None else None
        width = getattr(self.estimator, "n_features_in_", None)
        self.n_features = int(width) if width is not None else None

    def predict(self, rows: list[list[float]]) -> list[Any]:
        data: Any = rows
        if self.features:
            import pandas as pd

            data = pd.DataFrame(rows, columns=self.features)
        return list(self.estimator.predict(data).tolist())


def media_type(header: str | None, default: str = JSON) -> str:
    """``application/json; charset=utf-8`` → ``application/json``; ``*/*`` or none → ``default``."""
    if not header:
        return default
    first = header.split(",")[0].split(";")[0].strip().lower()
    return default if first in ("*/*", "") else first


def parse(
    body: bytes, content_type: str, features: list[str] | None, n_features: int | None = None
) -> list[list[float]]:
    """The rows of a request body, each a list of finite numbers in the model's column order."""
    if not body.strip():
        raise BadRequest(400, "the request body is empty; send rows of features as JSON or CSV")
    if content_type == JSON:
        rows = _json_rows(body, features)
    elif content_type == CSV:
        rows = _csv_rows(body, features)
    else:
        raise BadRequest(
            415, f"content type {content_type!r} is not supported; use {JSON} or {CSV}"
        )
    width = len(features) if features else n_features
    for i, row in enumerate(rows):
        if width is not None and len(row) != width:
            raise BadRequest(400, f"row {i} has {len(row)} values; the model expects {width}")
        for j, value in enumerate(row):
            if not math.isfinite(value):
                raise BadRequest(400, f"row {i}, column {j}: {value} is not a finite number")
    return rows


def _json_rows(body: bytes, features: list[str] | None) -> list[list[float]]:
    try:
        doc = json.loads(body, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"malformed JSON: {exc}") from None
    if isinstance(doc, dict):
        key = next((k for k in ("instances", "inputs") if k in doc), None)
        if key is None:
            raise BadRequest(400, 'a JSON object must hold the rows under "instances" or "inputs"')
        doc = doc[key]
    if not isinstance(doc, list) or not doc:
        raise BadRequest(400, "send a non-empty list of rows (or one row)")
    if not isinstance(doc[0], list | dict):
        doc = [doc]  # one row
    return [_row(i, item, features) for i, item in enumerate(doc)]


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _row(i: int, item: Any, features: list[str] | None) -> list[float]:
    if isinstance(item, dict):
        if not features:
            raise BadRequest(400, f"row {i} is an object, but the model has no column names")
        missing = [f for f in features if f not in item]
        unknown = sorted(set(item) - set(features))
        if missing or unknown:
            problems = [f"missing {', '.join(missing)}"] if missing else []
            problems += [f"unknown {', '.join(unknown)}"] if unknown else []
            raise BadRequest(400, f"row {i}: {'; '.join(problems)}")
        item = [item[f] for f in features]
    if not isinstance(item, list):
        raise BadRequest(400, f"row {i} is not a list of numbers")
    return [_number(i, j, v) for j, v in enumerate(item)]


def _number(i: int, j: int, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(400, f"row {i}, column {j}: {value!r} is not a number")
    return float(value)


def _csv_rows(body: bytes, features: list[str] | None) -> list[list[float]]:
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BadRequest(400, "the CSV body is not UTF-8 text") from None
    lines = [line for line in csv.reader(io.StringIO(text)) if line]
    if lines and features and [c.strip() for c in lines[0]] == features:
        lines = lines[1:]  # a header of the column names
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append([float(cell) for cell in line])
        except ValueError:
            raise BadRequest(400, f"CSV line {i + 1} has a value that is not a number") from None
    if not rows:
        raise BadRequest(400, "the CSV body has no rows")
    return rows


def encode(predictions: list[Any], accept: str) -> tuple[bytes, str]:
    """The predictions as ``accept`` asks: a JSON array, or CSV with one per line."""
    if accept == JSON:
        return json.dumps(predictions).encode(), JSON
    if accept == CSV:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for value in predictions:
            writer.writerow(value if isinstance(value, list) else [value])
        return out.getvalue().encode(), CSV
    raise BadRequest(406, f"cannot answer in {accept!r}; accept {JSON} or {CSV}")


def make_server(model: Any, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A server for ``model`` (anything with ``features``, ``n_features`` and ``predict``)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: every answer has a Content-Length

        def do_GET(self) -> None:
            if self.path == "/ping":
                self._answer(200, b"", "text/plain")
            else:
                self._answer(404, _error("not found"), JSON)

        def do_POST(self) -> None:
            try:
                body = self._body()
                if self.path != "/invocations":
                    raise BadRequest(404, "not found")
                rows = parse(
                    body,
                    media_type(self.headers.get("Content-Type")),
                    model.features,
                    model.n_features,
                )
                accept = media_type(self.headers.get("Accept"))
                if accept not in (JSON, CSV):
                    raise BadRequest(406, f"cannot answer in {accept!r}; accept {JSON} or {CSV}")
            except BadRequest as exc:
                self._answer(exc.status, _error(exc.message), JSON)
                return
            try:
                out, out_type = encode(model.predict(rows), accept)
            except Exception as exc:  # noqa: BLE001 - the model's own failure: a 500 saying why
                self._answer(500, _error(f"{type(exc).__name__}: {exc}"), JSON)
                return
            self._answer(200, out, out_type)

        def _body(self) -> bytes:
            length = self.headers.get("Content-Length")
            if length is None:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    self.close_connection = True
                    raise BadRequest(411, "send the body with a Content-Length")
                return b""
            if not length.isdigit():
                self.close_connection = True
                raise BadRequest(400, f"bad Content-Length {length!r}")
            if int(length) > MAX_BODY_BYTES:
                self.close_connection = True  # the unread body must not be taken for a request
                raise BadRequest(413, f"the body has {length} bytes; the limit is {MAX_BODY_BYTES}")
            return self.rfile.read(int(length))

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """No access log: one line per request would flood the endpoint's log."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def _watch_parent() -> None:
    """Exit when the process that started us is gone, so no orphan keeps the port."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main() -> None:
    port = int(os.environ["SAGEMAKER_BIND_TO_PORT"])
    model_dir = Path(os.environ.get("SM_MODEL_DIR") or os.getcwd())
    if os.environ.get("LOCKGATE_WATCH_PARENT") == "1":
        _watch_parent()
    try:
        model = Model(model_dir)
    except Exception as exc:  # noqa: BLE001 - any load failure: shown in the endpoint's log
        print(f"cannot load the model in {model_dir}: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(3)
    server = make_server(model, port)

    def stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever to return: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"serving {model_dir} on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
