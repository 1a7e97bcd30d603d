"""The inference server of one endpoint instance: ``GET /ping``, ``POST /invocations``,
``GET /metrics``.

Started by the endpoint controller as ``python -m lockgate.serving.instance`` with the contract
every serving container follows: it listens on ``SAGEMAKER_BIND_TO_PORT`` (on 127.0.0.1) and
serves the package in ``SM_MODEL_DIR``. The model is loaded before the port opens, so a good
``/ping`` means ready. A plain ASGI app on uvicorn (httptools, uvloop): a web framework's
routing would add more than the model's own predict time to each request.

Settings (environment): ``LOCKGATE_ENDPOINT``, ``LOCKGATE_INSTANCE``, ``LOCKGATE_MAX_BODY_BYTES``
(default 6 MiB, as the reference), ``LOCKGATE_CAPTURE_SAMPLE`` (0–1, default 0) with
``LOCKGATE_CAPTURE_URL`` (the artifact store).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from lockgate.serving import codec
from lockgate.serving.codec import CodecError
from lockgate.serving.formats import ModelError, Predictor

MAX_BODY_BYTES = 6 * 1024 * 1024
#: Exit status when the model cannot be loaded (the controller shows the output).
EXIT_LOAD_FAILED = 3

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Metrics:
    def __init__(self, endpoint: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lockgate_invocations",
            "Invocations answered, by HTTP status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "lockgate_invocation_errors",
            "Invocations answered with a 4xx or 5xx status, by kind.",
            ["endpoint", "kind"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lockgate_invocation_seconds",
            "Time from the request's arrival to its answer.",
            ["endpoint"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.endpoint = endpoint

    def observe(self, status: int, seconds: float) -> None:
        self.requests.labels(self.endpoint, str(status)).inc()
        if status >= 400:
            kind = "client" if status < 500 else "server"
            self.errors.labels(self.endpoint, kind).inc()
        self.latency.labels(self.endpoint).observe(seconds)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))


class InstanceApp:
    def __init__(
        self,
        predictor: Predictor,
        *,
        endpoint: str = "local",
        max_body: int = MAX_BODY_BYTES,
        capture: Any = None,
    ) -> None:
        self.predictor = predictor
        self.max_body = max_body
        self.metrics = Metrics(endpoint)
        self.capture = capture

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/invocations" and method == "POST":
            await self._invoke(scope, receive, send)
        elif path == "/ping" and method == "GET":
            await answer(send, 200, b"", "text/plain")
        elif path == "/metrics" and method == "GET":
            await answer(send, 200, self.metrics.render(), "text/plain; version=0.0.4")
        else:
            await answer(send, 404, b'{"error": "not found"}', codec.JSON)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.capture is not None:
                    self.capture.flush()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        content_type = codec.media_type(headers.get("content-type"))
        accept = codec.media_type(headers.get("accept"))
        body = b""
        try:
            body = await read_body(receive, headers, self.max_body)
            status, out, out_type = 200, *self.predictor.invoke(body, content_type, accept)
        except CodecError as exc:
            status, out, out_type = exc.status, _error(exc.message), codec.JSON
        except ModelError as exc:
            status, out, out_type = 500, _error(str(exc)), codec.JSON
        await answer(send, status, out, out_type)
        self.metrics.observe(status, time.perf_counter() - start)
        if self.capture is not None:
            self.capture.record(body, content_type, out, out_type, status)


def _error(message: str) -> bytes:
    import json

    return json.dumps({"error": message}).encode()


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise CodecError(413, f"the body has {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise CodecError(413, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def answer(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _watch_parent() -> None:
    """Exit when the process that started us (the daemon) is gone: no orphan keeps a port."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main() -> None:
    import socket

    import uvicorn

    from lockgate.serving import formats

    port = int(os.environ["SAGEMAKER_BIND_TO_PORT"])
    model_dir = Path(os.environ["SM_MODEL_DIR"])
    endpoint = os.environ.get("LOCKGATE_ENDPOINT", "local")
    if os.environ.get("LOCKGATE_WATCH_PARENT") == "1":
        _watch_parent()
    try:
        predictor = formats.load(model_dir)
    except Exception as exc:  # noqa: BLE001 (any load failure: shown to the operator, exit 3)
        print(f"cannot load the model in {model_dir}: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(EXIT_LOAD_FAILED)
    capture = None
    sample = float(os.environ.get("LOCKGATE_CAPTURE_SAMPLE", "0"))
    if sample > 0 and os.environ.get("LOCKGATE_CAPTURE_URL"):
        from lockgate.serving.capture import Capture

        capture = Capture(
            os.environ["LOCKGATE_CAPTURE_URL"],
            endpoint,
            os.environ.get("LOCKGATE_INSTANCE", str(os.getpid())),
            sample,
        )
    app = InstanceApp(
        predictor,
        endpoint=endpoint,
        max_body=int(os.environ.get("LOCKGATE_MAX_BODY_BYTES", MAX_BODY_BYTES)),
        capture=capture,
    )
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
    listener.bind(("127.0.0.1", port))
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=30,
    )
    print(f"serving {model_dir} on 127.0.0.1:{port}", flush=True)
    uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    main()
