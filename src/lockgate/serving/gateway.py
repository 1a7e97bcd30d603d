"""The gateway of one environment: the stable URL in front of every endpoint's instances.

``POST /endpoints/{name}/invocations`` — the reference service's runtime path, with its
``Content-Type`` and ``Accept`` headers — goes to a ready instance of the endpoint's serving
fleet (round robin), over kept-alive connections (:mod:`lockgate.serving.upstream`). A request that could not be sent to an
instance (it was draining, or just died) is sent once more to another, so a rollout fails no
request. During a canary rollout a canary's 5xx (or vanished instance) is counted against it and
the request is answered by the stable fleet instead. Clients outside the environment's
``allowed_clients`` get 403; a request needs a bearer token with ``endpoint:invoke`` unless the
endpoint is public (:mod:`lockgate.serving.access`).
"""

from __future__ import annotations

import json
import re
import time
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import TYPE_CHECKING

from lockgate.serving.codec import CodecError
from lockgate.serving.instance import Receive, Scope, Send, answer, read_body
from lockgate.serving.upstream import Upstream, UpstreamError

if TYPE_CHECKING:
    from lockgate.serving.access import Access
    from lockgate.serving.routes import Routes

PATH_RE = re.compile(r"^/endpoints/([a-z][a-z0-9-]{0,39})/invocations$")
#: The gateway's own ceiling; each endpoint enforces its own (smaller) limit.
MAX_BODY_BYTES = 100 * 1024 * 1024
FORWARDED = ("content-type", "accept")


def _error(status: int, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": message}).encode()


class Gateway:
    def __init__(
        self,
        env: str,
        routes: Routes,
        allowed: list[IPv4Network | IPv6Network],
        access: Access | None = None,
    ) -> None:
        self.env = env
        self.routes = routes
        self.allowed = allowed
        self.access = access
        self.upstream = Upstream()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if not self._allowed(scope):
            await answer(
                send,
                *_error(403, "this client may not call this environment's gateway"),
                "application/json",
            )
            return
        path = scope["path"]
        if path == "/ping" and scope["method"] == "GET":
            await answer(send, 200, b"", "text/plain")
            return
        match = PATH_RE.match(path)
        if match is None or scope["method"] != "POST":
            await answer(
                send,
                *_error(404, "not found; POST /endpoints/NAME/invocations"),
                "application/json",
            )
            return
        if self.access is not None and self.access.rate is not None:
            client = scope.get("client")
            if not self.access.rate.allow(client[0] if client else "unknown"):
                await answer(
                    send,
                    *_error(
                        429,
                        f"more than {self.access.rate.rate:g} requests a second from this client",
                    ),
                    "application/json",
                )
                return
        if self.access is not None:
            authorization = next(
                (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None
            )
            denied = await self.access.check(match.group(1), authorization)
            if denied is not None:
                await answer(send, *_error(*denied), "application/json")
                return
        await self.forward(match.group(1), scope, receive, send)

    async def forward(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await read_body(receive, headers, MAX_BODY_BYTES)
        except CodecError as exc:
            await answer(send, *_error(exc.status, exc.message), "application/json")
            return
        sent = {k: headers[k] for k in FORWARDED if k in headers}
        tried: set[str] = set()
        stable_only = False
        for _ in range(3):
            try:
                pick = self.routes.pick(self.env, name, stable_only=stable_only)
            except KeyError:
                await answer(
                    send, *_error(404, f"no endpoint {name} in {self.env}"), "application/json"
                )
                return
            if pick is None or pick.url in tried:
                break
            tried.add(pick.url)
            host, _, port = pick.url.removeprefix("http://").rpartition(":")
            start = time.perf_counter()
            try:
                got = await self.upstream.post(host, int(port), "/invocations", body, sent)
            except UpstreamError:
                self.routes.observe(
                    self.env, name, pick.generation, None, time.perf_counter() - start
                )
                stable_only = stable_only or not pick.stable
                continue  # the instance went away before answering: try another
            self.routes.observe(
                self.env, name, pick.generation, got.status, time.perf_counter() - start
            )
            if got.status >= 500 and not pick.stable:
                stable_only = True  # a canary's failure counts against it; the stable fleet answers
                continue
            await answer(send, got.status, got.body, got.content_type)
            return
        await answer(
            send,
            *_error(
                503,
                f"endpoint {name} in {self.env} has no instance ready; see `lockgate endpoint show {name} --env {self.env}`",
            ),
            "application/json",
        )

    def _allowed(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client:
            return False
        try:
            address = ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self.allowed)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.upstream.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
