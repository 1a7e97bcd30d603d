"""The event worker: dispatch new events to the rules, then deliver each with a lease.

Two stages, each safe to run in several workers at once:

1. **Dispatch.** In one transaction, take the oldest undispatched events, write one delivery per
   matching rule and mark the events dispatched. A crash before the commit leaves the events
   undispatched; after it, every delivery exists. (The unique (event, rule) pair makes a second
   dispatch impossible.)
2. **Deliver.** Claim a due delivery (a lease as long as the action's time limit plus a
   margin), run its action outside any transaction, then record the outcome fenced on the
   claim. A worker killed mid-action leaves its claim to expire; the next worker records that
   attempt as abandoned and delivers again, so delivery is at least once.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lockgate.automation import actions
from lockgate.automation.matching import matches
from lockgate.ids import new_id
from lockgate.platform import Environment, Platform
from lockgate.store import automation as db
from lockgate.store import events
from lockgate.store.automation import Delivery, Outcome

#: How often an idle worker looks for work.
POLL_S = 0.05
#: How long a claim outlives its action's time limit (slack for the bookkeeping).
LEASE_MARGIN_S = 30.0
#: Events taken per dispatch transaction.
DISPATCH_BATCH = 100


@dataclass(frozen=True)
class Report:
    """What happened to one delivery attempt, for whoever watches the worker."""

    environment: str
    delivery: Delivery
    outcome: Outcome
    recorded: bool


class Worker:
    def __init__(
        self,
        platform: Platform,
        environments: list[str],
        *,
        poll_s: float = POLL_S,
        lease_margin_s: float = LEASE_MARGIN_S,
        on_report: Callable[[Report], None] | None = None,
    ) -> None:
        self.platform = platform
        self.environments = [platform.ready(name) for name in environments]
        self.poll_s = poll_s
        self.lease_margin_s = lease_margin_s
        self.on_report = on_report or (lambda report: None)
        self.id = f"worker:{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; idle, look for work every ``poll_s`` seconds."""
        while not stop.is_set():
            if self.run_once() == 0:
                stop.wait(self.poll_s)

    def run_once(self) -> int:
        """Dispatch what is new and deliver what is due, in every environment; how many ran."""
        done = 0
        for env in self.environments:
            if self._has_work(env):
                self.dispatch(env)
                while self.deliver_one(env) is not None:
                    done += 1
        return done

    def _has_work(self, env: Environment) -> bool:
        with env.store.read() as session:
            return db.has_undispatched(session) or db.has_due(session, time.time())

    def dispatch(self, env: Environment) -> int:
        """Match new events against the applied rules; how many deliveries were created."""
        created = 0
        with env.store.transaction() as session:
            pending = db.undispatched(session, DISPATCH_BATCH)
            if not pending:
                return 0
            rules = db.list_rules(session)
            now = time.time()
            for event in pending:
                for rule in rules:
                    if matches(rule.spec, event, env.name):
                        db.add_delivery(session, event.id, rule.name, rule.spec, now)
                        created += 1
            db.mark_dispatched(session, [e.id for e in pending])
        return created

    def deliver_one(self, env: Environment) -> Report | None:
        """Claim one due delivery, run its action and record the outcome; None if none is due."""
        with env.store.transaction() as session:
            delivery = db.claim(session, self.id, time.time(), self._lease)
            event = None if delivery is None else events.get_event(session, delivery.event_id)
        if delivery is None:
            return None
        if event is None:
            outcome = Outcome(False, {}, f"event {delivery.event_id} no longer exists", False)
        else:
            outcome = actions.run(self.platform, env, delivery, event)
        with env.store.transaction() as session:
            recorded = db.finish(session, delivery, self.id, outcome, time.time())
        report = Report(env.name, recorded or delivery, outcome, recorded is not None)
        self.on_report(report)
        return report

    def _lease(self, action: dict[str, Any]) -> float:
        return actions.time_limit(action) + self.lease_margin_s
