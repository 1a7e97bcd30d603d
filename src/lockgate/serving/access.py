"""Who may call an environment's gateway: a bearer token whose principal holds
``endpoint:invoke`` there, unless the endpoint was declared public (``--public``).

Checked on every request, so it is cached: a verified token until it expires (at most 10,000
kept), a principal's permission for 5 s, and the set of public endpoints for 2 s. A miss is
looked up in a worker thread, never on the event loop. The answer names the problem (401
without or with a bad token, 403 without the permission) and never echoes the token.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lockgate.platform import Platform

TOKEN_CACHE = 10_000
PERMISSION_TTL_S = 5.0
PUBLIC_TTL_S = 2.0


class RateLimit:
    """A token bucket per client address: ``rate`` a second, bursts of twice that."""

    def __init__(self, rate: int) -> None:
        self.rate = float(rate)
        self.burst = 2.0 * rate
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        tokens, at = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if len(self._buckets) > 10_000:
            self._buckets.clear()
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return False
        self._buckets[client] = (tokens - 1.0, now)
        return True


class Access:
    def __init__(self, platform: Platform, env: str) -> None:
        self.platform = platform
        self.env = env
        limit = platform.env(env).spec.network.max_requests_per_s
        self.rate = RateLimit(limit) if limit else None
        self._tokens: dict[str, tuple[str, float]] = {}
        self._may_invoke: dict[str, tuple[bool, float]] = {}
        self._public: tuple[frozenset[str], float] = (frozenset(), 0.0)

    async def check(self, endpoint: str, authorization: str | None) -> tuple[int, str] | None:
        """None when the request may go on; else the status and the reason."""
        if endpoint in await self._public_endpoints():
            return None
        scheme, _, bearer = (authorization or "").partition(" ")
        bearer = bearer.strip()
        if scheme.lower() != "bearer" or not bearer:
            return 401, (
                f"endpoint {endpoint} needs Authorization: Bearer TOKEN (lockgate auth login "
                f"--env {self.env}), or must be created --public"
            )
        principal = await self._principal(bearer)
        if isinstance(principal, tuple):
            return principal
        if not await self._allowed(principal):
            return 403, f"{principal} may not invoke endpoints in {self.env} (endpoint:invoke)"
        return None

    async def _principal(self, bearer: str) -> str | tuple[int, str]:
        now = time.time()
        cached = self._tokens.get(bearer)
        if cached and cached[1] > now:
            return cached[0]
        from lockgate.auth import credentials
        from lockgate.errors import AuthenticationError

        try:
            who = await asyncio.to_thread(credentials.authenticate, self.platform, self.env, bearer)
        except AuthenticationError as exc:
            return 401, exc.message
        if len(self._tokens) >= TOKEN_CACHE:
            self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}
            if len(self._tokens) >= TOKEN_CACHE:
                self._tokens.clear()
        # An API token is looked up again at least every 5 s, so a revocation takes effect.
        until = (
            min(float(who.expires_at), now + PERMISSION_TTL_S)
            if who.via.startswith("api-token")
            else float(who.expires_at)
        )
        self._tokens[bearer] = (who.principal.name, until)
        return who.principal.name

    async def _allowed(self, principal: str) -> bool:
        now = time.monotonic()
        cached = self._may_invoke.get(principal)
        if cached and now - cached[1] < PERMISSION_TTL_S:
            return cached[0]
        from lockgate.auth.policy import is_allowed
        from lockgate.auth.principal import Principal

        store = self.platform.env(self.env).store
        allowed = await asyncio.to_thread(
            is_allowed, store, Principal(principal), "endpoint:invoke"
        )
        self._may_invoke[principal] = (allowed, now)
        return allowed

    async def _public_endpoints(self) -> frozenset[str]:
        names, at = self._public
        if time.monotonic() - at < PUBLIC_TTL_S:
            return names
        names = await asyncio.to_thread(self._read_public)
        self._public = (names, time.monotonic())
        return names

    def _read_public(self) -> frozenset[str]:
        from lockgate.store import endpoints as db

        with self.platform.env(self.env).store.read() as session:
            return frozenset(e.name for e in db.list_all(session) if e.config.get("public"))
