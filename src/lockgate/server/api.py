"""The control-plane HTTP API (``/api/v1``), on the daemon's port; OpenAPI at ``/openapi.json``.

Routes parse, call one service function and render, like the CLI. (FastAPI reads the route
annotations at run time, so its types are imported at module level; only the daemon imports
this module.) Every route but ``/ping`` needs ``Authorization: Bearer TOKEN`` — an access token
(``lockgate auth login``, ``POST /auth/token``, ``POST /auth/oidc/exchange``) or an API token — and
acts as that token's principal, through the one policy check of the services. The token's
environment must be the route's. The daemon listens on loopback unless ``platform.toml`` opens it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from lockgate import __version__
from lockgate.auth.credentials import Authenticated
from lockgate.errors import AuthenticationError, LockgateError, ValidationError

if TYPE_CHECKING:
    from lockgate.platform import Platform
    from lockgate.serving.gateway import Gateway

#: Requests a client may make to the /auth routes per minute.
AUTH_RATE_PER_MIN = 30
MAX_AUTH_BODY = 32_768


class OidcExchange(BaseModel):
    token: str = Field(min_length=1, max_length=16_384, description="The issuer's JWT.")
    environment: str = Field(min_length=1, max_length=40)


class AccessToken(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    principal: str
    environment: str
    expires_at: int


class _RateLimit:
    """A fixed window per client address: enough to stop guessing, cheap to keep."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        minute = int(time.time() // 60)
        with self._lock:
            start, count = self._windows.get(client, (minute, 0))
            count = count + 1 if start == minute else 1
            self._windows[client] = (minute, count)
            if len(self._windows) > 10_000:
                self._windows = {k: v for k, v in self._windows.items() if v[0] == minute}
        if count > self.per_minute:
            raise _TooMany(
                f"more than {self.per_minute} authentication requests a minute from {client}."
            )


class _TooMany(LockgateError):
    code = "rate_limited"
    exit_code = 1
    http_status = 429


def build_app(platform: Platform, gateways: dict[str, Gateway], info: dict[str, Any]) -> FastAPI:
    from lockgate.auth import credentials, oidc
    from lockgate.serving import service

    limit = _RateLimit(AUTH_RATE_PER_MIN)
    app = FastAPI(
        title="Lockgate",
        version=__version__,
        description="The control plane of a Lockgate platform home. Every route but /ping needs "
        "a bearer token for the route's environment.",
    )

    @app.exception_handler(LockgateError)
    async def _error(request: Request, exc: LockgateError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers)

    def _bearer(request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationError(
                "this route needs Authorization: Bearer TOKEN.",
                hint="Get a token: lockgate auth login --env ENV --print",
            )
        if len(value) > 16_384:
            raise AuthenticationError("the credential is too large.")
        return value.strip()

    def caller(request: Request) -> Authenticated:
        """The principal of a route under /api/v1/environments/{env}/…, for that environment."""
        token = _bearer(request)
        env = request.path_params.get("env") or credentials.environment_of(platform, token)
        if env not in platform.env_names:
            raise AuthenticationError(f"{env!r} is not an environment of this platform.")
        return credentials.authenticate(platform, env, token)

    # The routes' `who` parameter: the authenticated caller (FastAPI resolves the annotation
    # in this module's namespace, so it names the class, with the dependency as the default).
    needs_token = Depends(caller)

    def _client(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    @app.get("/ping", tags=["health"])
    def ping() -> dict[str, str]:
        """Liveness: 200 while the daemon runs (no token needed)."""
        return {"status": "ok"}

    @app.post("/auth/token", tags=["auth"], response_model=AccessToken)
    def token_from_api_token(request: Request) -> AccessToken:
        """Exchange an API token (Authorization: Bearer lgt_…) for a short-lived access token."""
        limit.check(_client(request))
        bearer = _bearer(request)
        access, who = credentials.exchange(
            platform, credentials.environment_of(platform, bearer), bearer
        )
        return AccessToken(
            access_token=access,
            principal=who.principal.name,
            environment=who.environment,
            expires_at=int(time.time()) + 900,
        )

    @app.post("/auth/oidc/exchange", tags=["auth"], response_model=AccessToken)
    async def oidc_exchange(request: Request) -> AccessToken:
        """Exchange an OIDC identity token (e.g. GitHub Actions') for a short-lived access token
        of the service principal a trust in platform.toml names."""
        limit.check(_client(request))
        body = await request.body()
        if len(body) > MAX_AUTH_BODY:
            raise ValidationError(f"the request body is larger than {MAX_AUTH_BODY} bytes.")
        try:
            asked = OidcExchange.model_validate_json(body)
        except ValueError as exc:
            raise ValidationError(
                f'the body must be {{"token": JWT, "environment": ENV}}: {str(exc)[:200]}'
            ) from None
        if asked.environment not in platform.env_names:
            raise ValidationError(f"{asked.environment!r} is not an environment of this platform.")
        access, who = oidc.exchange(platform, asked.environment, asked.token)
        return AccessToken(
            access_token=access,
            principal=who.principal.name,
            environment=who.environment,
            expires_at=who.expires_at,
        )

    @app.get("/api/v1/whoami", tags=["auth"])
    def whoami(who: Authenticated = needs_token) -> dict[str, Any]:
        """The principal, environment and origin of the presented token."""
        return {
            "principal": who.principal.name,
            "environment": who.environment,
            "via": who.via,
            "expires_at": who.expires_at,
        }

    @app.get("/api/v1/status", tags=["platform"])
    def status(who: Authenticated = needs_token) -> dict[str, Any]:
        """The daemon: its pid, URLs and the environments it serves."""
        return {**info, "environments": platform.env_names}

    @app.get("/api/v1/environments/{env}/endpoints", tags=["endpoints"])
    def list_endpoints(env: str, who: Authenticated = needs_token) -> list[dict[str, Any]]:
        """Every endpoint of ``env`` with its status."""
        return [e.to_dict() for e in service.list_endpoints(platform, who.principal, env=env)]

    @app.get("/api/v1/environments/{env}/endpoints/{name}", tags=["endpoints"])
    def show_endpoint(env: str, name: str, who: Authenticated = needs_token) -> dict[str, Any]:
        """One endpoint: its model, instances, status and the reason of a failure."""
        return service.get(platform, who.principal, name, env=env).to_dict()

    @app.post("/api/v1/environments/{env}/endpoints/{name}/invocations", tags=["endpoints"])
    async def invoke(
        env: str, name: str, request: Request, who: Authenticated = needs_token
    ) -> Response:
        """Send the body to the endpoint (needs endpoint:invoke), as its environment's gateway does."""
        import asyncio

        await asyncio.to_thread(service.check_invoke, platform, who.principal, name, env=env)
        gateway = gateways[env]
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

    from lockgate.server import remote_routes

    remote_routes.add_routes(app, platform, needs_token)
    return app
