"""Rollout strategies and the alarms that stop a bad one.

``all-at-once``: traffic moves to the new fleet as soon as every new instance answers /ping.
``canary:PCT:BAKE``: PCT % of the traffic goes to the new fleet for BAKE seconds, then all of it.
``linear:STEP:INTERVAL``: STEP %, 2·STEP %… of the traffic, each for INTERVAL seconds, then all.

While the new fleet takes a share, its error rate (5xx and vanished instances) and p99 latency,
as the gateway sees them, are checked against the alarms; one that fires rolls the traffic back
to the old fleet, which never stopped serving.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from lockgate.errors import ValidationError
from lockgate.serving.routes import FleetStats

STRATEGY_HELP = "all-at-once, canary:PCT:BAKE_SECONDS or linear:STEP_PCT:INTERVAL_SECONDS"


@dataclass(frozen=True)
class Strategy:
    kind: str = "all-at-once"
    #: (percent of the traffic to the new fleet, seconds to hold it), in order.
    steps: tuple[tuple[float, float], ...] = ()

    def text(self) -> str:
        if self.kind == "all-at-once":
            return self.kind
        if self.kind == "canary":
            percent, bake = self.steps[0]
            return f"canary:{percent:g}:{bake:g}"
        return f"linear:{self.steps[0][0]:g}:{self.steps[0][1]:g}"


_STRATEGY_RE = re.compile(r"^(canary|linear):([0-9]+(?:\.[0-9]+)?):([0-9]+(?:\.[0-9]+)?)$")


def parse_strategy(text: str) -> Strategy:
    if text.strip() == "all-at-once":
        return Strategy()
    match = _STRATEGY_RE.match(text.strip())
    if match:
        kind, percent, seconds = match.group(1), float(match.group(2)), float(match.group(3))
        if 0 < percent < 100 and seconds <= 3600:
            if kind == "canary":
                return Strategy("canary", ((percent, seconds),))
            count = math.ceil(100 / percent) - 1  # the steps below 100 %
            return Strategy("linear", tuple((percent * (i + 1), seconds) for i in range(count)))
    raise ValidationError(
        f"rollout strategy {text!r} is not valid.",
        hint=f"Use {STRATEGY_HELP}, with 0 < PCT < 100 and 0 ≤ seconds ≤ 3600 (e.g. canary:10:60).",
    )


@dataclass(frozen=True)
class Alarms:
    #: The share of the new fleet's requests that may fail (5xx or no answer).
    max_error_rate: float = 0.01
    #: The new fleet's p99 latency in milliseconds, if checked.
    max_p99_ms: float | None = None
    #: Requests the new fleet must have answered before an alarm may fire.
    min_requests: int = 10

    def check(self) -> Alarms:
        if not 0 <= self.max_error_rate <= 1:
            raise ValidationError("the error-rate alarm must be between 0 and 1 (a share).")
        if self.max_p99_ms is not None and not 0 < self.max_p99_ms <= 600_000:
            raise ValidationError("the p99 alarm must be between 0 and 600000 ms.")
        return self

    def fired(self, stats: FleetStats) -> str | None:
        if stats.requests < self.min_requests:
            return None
        if stats.error_rate > self.max_error_rate:
            return (
                f"error rate {stats.error_rate:.1%} over {stats.requests} requests "
                f"> {self.max_error_rate:.1%}"
            )
        if self.max_p99_ms is not None and stats.p99_ms > self.max_p99_ms:
            return f"p99 latency {stats.p99_ms:.0f} ms over {stats.requests} requests > {self.max_p99_ms:g} ms"
        return None


@dataclass
class Rollout:
    """A new fleet taking traffic step by step, watched by the alarms."""

    strategy: Strategy
    alarms: Alarms
    started: float
    step: int = 0
    window: FleetStats = field(default_factory=FleetStats)

    @property
    def percent(self) -> float:
        return self.strategy.steps[self.step][0]

    def advance(self, stats: FleetStats, now: float) -> tuple[str, str | None]:
        """("hold" | "next" | "done" | "rollback", why) after merging the latest figures."""
        self.window.requests += stats.requests
        self.window.errors += stats.errors
        self.window.latencies.extend(stats.latencies)
        why = self.alarms.fired(self.window)
        if why is not None:
            return "rollback", why
        if now - self.started < self.strategy.steps[self.step][1]:
            return "hold", None
        self.step += 1
        self.started = now
        return ("done", None) if self.step >= len(self.strategy.steps) else ("next", None)
