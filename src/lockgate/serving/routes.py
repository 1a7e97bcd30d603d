"""Where each endpoint's traffic goes, and how each fleet is doing.

An endpoint has a *stable* fleet and, during a rollout, a *canary* fleet with a share of the
traffic. The gateway picks an instance per request (weighted between fleets, round robin within
one) and reports each answer back, so the controller can watch the canary's error rate and p99
latency while it bakes. Shared by the gateway (event loop) and the controller (a thread).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

#: Latencies kept per fleet for the p99 (the newest).
WINDOW = 5000


@dataclass
class FleetStats:
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def observe(self, status: int | None, seconds: float) -> None:
        self.requests += 1
        if status is None or status >= 500:
            self.errors += 1
        self.latencies.append(seconds)
        if len(self.latencies) > WINDOW:
            del self.latencies[: len(self.latencies) - WINDOW]

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[int(0.99 * (len(ordered) - 1))] * 1000


@dataclass
class Pick:
    url: str
    generation: int
    stable: bool


Fleet = tuple[int, list[str]]  # (generation, ready instance URLs)


@dataclass
class _Route:
    stable: Fleet | None = None
    canary: Fleet | None = None
    canary_percent: float = 0.0


@dataclass
class Routes:
    table: dict[tuple[str, str], _Route] = field(default_factory=dict)
    stats: dict[tuple[str, str, int], FleetStats] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    turn: int = 0

    def set(self, env: str, name: str, generation: int, urls: list[str]) -> None:
        """All of ``name``'s traffic to ``generation`` (ends any canary)."""
        with self.lock:
            self.table[(env, name)] = _Route(stable=(generation, urls))

    def set_canary(
        self, env: str, name: str, generation: int, urls: list[str], percent: float
    ) -> None:
        with self.lock:
            route = self.table.setdefault((env, name), _Route())
            route.canary = (generation, urls)
            route.canary_percent = percent

    def end_canary(self, env: str, name: str) -> None:
        with self.lock:
            route = self.table.get((env, name))
            if route is not None:
                route.canary, route.canary_percent = None, 0.0

    def remove(self, env: str, name: str) -> None:
        with self.lock:
            self.table.pop((env, name), None)

    def pick(self, env: str, name: str, *, stable_only: bool = False) -> Pick | None:
        """An instance for one request; None when no fleet has a ready instance.

        Raises KeyError when the endpoint is not served here at all.
        """
        with self.lock:
            route = self.table[(env, name)]
            self.turn += 1
            # turn·19 mod 100 visits every residue once per 100 turns: an exact, even share.
            to_canary = (self.turn * 19) % 100 < route.canary_percent
            if stable_only:
                order = [route.stable]
            elif to_canary:
                order = [route.canary, route.stable]
            else:
                order = [route.stable, route.canary]
            for fleet in order:
                if fleet is not None and fleet[1]:
                    generation, urls = fleet
                    return Pick(urls[self.turn % len(urls)], generation, fleet is route.stable)
            return None

    def observe(
        self, env: str, name: str, generation: int, status: int | None, seconds: float
    ) -> None:
        with self.lock:
            self.stats.setdefault((env, name, generation), FleetStats()).observe(status, seconds)

    def take_stats(self, env: str, name: str, generation: int) -> FleetStats:
        """The fleet's figures since the last call (a fresh window starts)."""
        with self.lock:
            return self.stats.pop((env, name, generation), FleetStats())
