"""The control-plane HTTP API (``/api/v1``), on the daemon's port; OpenAPI at ``/openapi.json``.

Routes parse, call one service function and render, like the CLI. (FastAPI reads the route
annotations at run time, so its types are imported at module level; only the daemon imports
this module.) Until tokens land (the
security release) the API is read-only and acts as the daemon's own principal — the OS user who
ran ``lockgate up`` — and it listens on loopback only by default; invocations also go through
each environment's gateway.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from lockgate import __version__
from lockgate.errors import LockgateError

if TYPE_CHECKING:
    from lockgate.platform import Platform
    from lockgate.serving.gateway import Gateway


def build_app(platform: Platform, gateways: dict[str, Gateway], info: dict[str, Any]) -> FastAPI:
    from lockgate.auth.principal import local_principal
    from lockgate.serving import service

    owner = local_principal()
    app = FastAPI(
        title="Lockgate",
        version=__version__,
        description="The control plane of a Lockgate platform home.",
    )

    @app.exception_handler(LockgateError)
    async def _error(request: Request, exc: LockgateError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    @app.get("/ping", tags=["health"])
    def ping() -> dict[str, str]:
        """Liveness: 200 while the daemon runs."""
        return {"status": "ok"}

    @app.get("/api/v1/status", tags=["platform"])
    def status() -> dict[str, Any]:
        """The daemon: its pid, URLs and the environments it serves."""
        return {**info, "environments": platform.env_names}

    @app.get("/api/v1/environments/{env}/endpoints", tags=["endpoints"])
    def list_endpoints(env: str) -> list[dict[str, Any]]:
        """Every endpoint of ``env`` with its status."""
        return [e.to_dict() for e in service.list_endpoints(platform, owner, env=env)]

    @app.get("/api/v1/environments/{env}/endpoints/{name}", tags=["endpoints"])
    def show_endpoint(env: str, name: str) -> dict[str, Any]:
        """One endpoint: its model, instances, status and the reason of a failure."""
        return service.get(platform, owner, name, env=env).to_dict()

    @app.post("/api/v1/environments/{env}/endpoints/{name}/invocations", tags=["endpoints"])
    async def invoke(env: str, name: str, request: Request) -> Response:
        """Send the body to the endpoint, as its environment's gateway does."""
        gateway = gateways.get(env)
        if gateway is None:
            return JSONResponse({"error": f"no environment {env}"}, status_code=404)
        captured: dict[str, Any] = {}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = dict(message["headers"])
            else:
                captured["body"] = message.get("body", b"")

        await gateway.forward(name, request.scope, request.receive, send)
        content_type = captured["headers"].get(b"content-type", b"application/json").decode()
        return Response(captured["body"], status_code=captured["status"], media_type=content_type)

    return app
