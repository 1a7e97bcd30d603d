"""The endpoint controller: makes the endpoints recorded in each environment's store run.

Each pass reads every endpoint row and moves reality one step towards it:

* no fleet yet (a new endpoint, or the daemon restarted) → start one for the row's generation;
* a new generation (``endpoint update``) → start the new fleet beside the old (blue/green); once
  every new instance answers /ping, traffic moves by the update's strategy (all at once, or a
  canary or linear shift watched by alarms that roll it back) and the old fleet drains; if the
  new fleet fails to start, or an alarm fires, the old one keeps serving and the row says why;
* an instance that exits while serving is restarted with backoff (1, 2, 4… s, at most 30 s);
* ``Deleting`` → traffic stops, the instances drain, the row goes.

Rows are the only state: a restarted daemon starts every endpoint again from them.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from lockgate.errors import LockgateError
from lockgate.platform import Environment, Platform
from lockgate.serving import fleet as fleets
from lockgate.serving.fleet import EXITED, FAILED, STARTING, Fleet, Instance
from lockgate.serving.package import read_manifest
from lockgate.serving.rollout import Alarms, Rollout, parse_strategy
from lockgate.serving.routes import Routes
from lockgate.store import endpoints as db
from lockgate.store.endpoints import CREATING, DELETING, IN_SERVICE, Endpoint

log = logging.getLogger("lockgate.controller")

#: Seconds between two passes.
TICK_S = 0.2


class EndpointController:
    def __init__(self, platform: Platform, routes: Routes, run_dir: Path) -> None:
        self.platform = platform
        self.routes = routes
        self.run_dir = run_dir
        self.serving: dict[tuple[str, str], Fleet] = {}
        self.candidates: dict[tuple[str, str], Fleet] = {}
        #: The generation whose start failed, per endpoint: not retried until the next update.
        self.failed: dict[tuple[str, str], int] = {}
        self.rollouts: dict[tuple[str, str], Rollout] = {}
        self.gateways: dict[str, str] = {}

    # --- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.reconcile()
            stop.wait(TICK_S)

    def reconcile(self) -> None:
        for name in self.platform.env_names:
            env = self.platform.env(name)
            try:
                with env.store.read() as session:
                    rows = db.list_all(session)
            except LockgateError as exc:
                log.warning("cannot read the endpoints of %s: %s", name, exc.message)
                continue
            seen = set()
            for row in rows:
                seen.add((name, row.name))
                try:
                    self._endpoint(env, row)
                except Exception:  # one endpoint's trouble must not stop the others
                    log.exception("reconciling endpoint %s in %s failed", row.name, name)
            for key in [k for k in {**self.serving, **self.candidates} if k[0] == name]:
                if key not in seen:  # its row is gone
                    self._stop_all(key)

    def shutdown(self) -> None:
        """Stop every fleet, draining them (the rows stay: a restart serves them again)."""
        for key in list({**self.serving, **self.candidates}):
            self._stop_all(key, wait=True)

    # --- one endpoint -----------------------------------------------------------------------

    def _endpoint(self, env: Environment, row: Endpoint) -> None:
        key = (env.name, row.name)
        if row.status == DELETING:
            # Traffic stops now; the instances finish their requests in the background, so one
            # endpoint's drain never holds up the others.
            self._stop_all(key)
            with env.store.transaction() as session:
                db.remove(session, row.name)
            log.info("endpoint %s in %s deleted", row.name, env.name)
            return
        serving, candidate = self.serving.get(key), self.candidates.get(key)
        restoring = self.failed.get(key) == row.generation  # an older fleet, on purpose
        if candidate is not None and candidate.generation != row.generation and not restoring:
            # Another update landed while this one was starting or baking: drop it for the newer.
            self._abandon(env, key, candidate)
            candidate = None
        last = row.serving or {}
        if (
            serving is None
            and candidate is None
            and row.status == IN_SERVICE
            and last.get("generation") not in (None, row.generation)
        ):
            # The daemon restarted after an update that failed or was rolled back: serve again
            # what served then, not the desired version that never made it.
            self.failed[key] = row.generation
            candidate = self._start_fleet(
                env,
                row,
                generation=int(last["generation"]),
                model_ref=str(last["model_ref"]),
                digest=str(last["model_digest"]),
                instances=len(last.get("instances", [])) or row.instances,
            )
            if candidate is None:
                return
        # A failed start is not retried until an update (a new generation); after a daemon
        # restart a Failed row stays failed too.
        wanted = row.generation != self.failed.get(key) and row.status != db.FAILED
        if (
            candidate is None
            and wanted
            and (serving is None or serving.generation != row.generation)
        ):
            if serving is None and row.status == IN_SERVICE:
                self._report(env, row, status=CREATING, reason="restoring after the daemon started")
            candidate = self._start_fleet(env, row)
            if candidate is None:
                return
        if candidate is not None and key in self.rollouts:
            assert serving is not None
            self._roll(env, row, key, candidate, serving)
        elif candidate is not None:
            self._advance(env, row, key, candidate, serving)
        if key in self.serving:
            self._supervise(env, row, key, self.serving[key])

    def _start_fleet(
        self,
        env: Environment,
        row: Endpoint,
        *,
        generation: int | None = None,
        model_ref: str | None = None,
        digest: str | None = None,
        instances: int | None = None,
    ) -> Fleet | None:
        """Start the fleet of ``row``'s desired generation, or of the one given."""
        key = (env.name, row.name)
        generation = generation or row.generation
        model_ref, digest = model_ref or row.model_ref, digest or row.model_digest
        folder = self.run_dir / env.name / "endpoints" / row.name / f"g{generation}"
        try:
            model_dir = env.artifacts.get_tree(digest, folder / "model")
            manifest = read_manifest(model_dir)
        except LockgateError as exc:
            self._fail(env, row, key, f"cannot use {model_ref}: {exc.message}")
            return None
        config = row.config
        fleet = Fleet(
            env.name,
            row.name,
            generation,
            model_ref,
            digest,
            model_dir,
            manifest,
            config,
            {
                "LOCKGATE_ENDPOINT": row.name,
                "LOCKGATE_MAX_BODY_BYTES": str(config.get("max_body_bytes", 6 * 1024 * 1024)),
                "LOCKGATE_CAPTURE_SAMPLE": str(config.get("capture", 0.0)),
                "LOCKGATE_CAPTURE_URL": env.artifacts.url,
                "OMP_NUM_THREADS": str(config.get("threads", 1)),
                "OPENBLAS_NUM_THREADS": str(config.get("threads", 1)),
                "MKL_NUM_THREADS": str(config.get("threads", 1)),
            },
        )
        taken = self._ports_in_use(env.name)
        for index in range(instances or row.instances):
            try:
                port = self._free_port(env, taken)
            except LockgateError as exc:
                fleet.stop()
                self._fail(env, row, key, exc.message)
                return None
            taken.add(port)
            instance = Instance(index, port, folder / f"instance-{index}.log")
            fleet.instances.append(instance)
            fleet.start(instance)
        self.candidates[key] = fleet
        log.info("endpoint %s in %s: starting generation %s", row.name, env.name, generation)
        return fleet

    def _advance(
        self,
        env: Environment,
        row: Endpoint,
        key: tuple[str, str],
        candidate: Fleet,
        serving: Fleet | None,
    ) -> None:
        for instance in candidate.instances:
            candidate.check(instance)
        failed = next((i for i in candidate.instances if i.state in (FAILED, EXITED)), None)
        if failed is not None:
            reason = candidate.failure(failed)
            candidate.stop()
            del self.candidates[key]
            if serving is None:
                self._fail(env, row, key, reason)
            else:
                self.failed[key] = candidate.generation
                self._report(
                    env,
                    row,
                    status=IN_SERVICE,
                    reason=f"update to generation {candidate.generation} failed; still serving "
                    f"{serving.model_ref}: {reason}",
                )
            return
        if any(i.state == STARTING for i in candidate.instances):
            return
        rollout = row.config.get("rollout") or {}
        strategy = parse_strategy(rollout.get("strategy", "all-at-once"))
        if serving is not None and strategy.steps:
            # Every new instance answers /ping: give it its first share of the traffic.
            alarms = Alarms(
                max_error_rate=rollout.get("max_error_rate", 0.01),
                max_p99_ms=rollout.get("max_p99_ms"),
            )
            self.rollouts[key] = Rollout(strategy, alarms, time.monotonic())
            self.routes.take_stats(env.name, row.name, candidate.generation)  # a clean window
            self.routes.set_canary(
                env.name,
                row.name,
                candidate.generation,
                candidate.ready_urls(),
                strategy.steps[0][0],
            )
            self._report(
                env,
                row,
                reason=f"{strategy.text()}: {strategy.steps[0][0]:g} % of the traffic to generation {candidate.generation}",
            )
            return
        self._switch(env, row, key, candidate, serving)

    def _switch(
        self,
        env: Environment,
        row: Endpoint,
        key: tuple[str, str],
        candidate: Fleet,
        serving: Fleet | None,
    ) -> None:
        """All traffic to ``candidate``, then drain the old fleet."""
        self.serving[key] = candidate
        self.candidates.pop(key, None)
        self.rollouts.pop(key, None)
        self.routes.set(env.name, row.name, candidate.generation, candidate.ready_urls())
        if serving is not None:
            serving.stop()
        current = candidate.generation == row.generation
        if current:
            self.failed.pop(key, None)
        # A restored older fleet keeps the row's reason (why the newer one is not serving).
        self._report(
            env, row, status=IN_SERVICE, reason=None if current else row.reason, fleet=candidate
        )
        log.info("endpoint %s in %s: generation %s in service", row.name, env.name, row.generation)

    def _roll(
        self,
        env: Environment,
        row: Endpoint,
        key: tuple[str, str],
        candidate: Fleet,
        serving: Fleet,
    ) -> None:
        """One step of a canary or linear rollout: hold, widen, finish, or roll back."""
        rollout = self.rollouts[key]
        for instance in candidate.instances:
            candidate.check(instance)
        died = next((i for i in candidate.instances if i.state in (FAILED, EXITED)), None)
        stats = self.routes.take_stats(env.name, row.name, candidate.generation)
        verdict, why = rollout.advance(stats, time.monotonic())
        if died is not None:
            verdict, why = "rollback", f"instance {died.index} of the new fleet exited"
        if verdict == "rollback":
            self.routes.end_canary(env.name, row.name)
            self.rollouts.pop(key, None)
            self._abandon(env, key, candidate)
            self.failed[key] = candidate.generation
            self._report(
                env,
                row,
                status=IN_SERVICE,
                reason=f"rollout of generation {candidate.generation} ({candidate.model_ref}) rolled back: "
                f"{why}; still serving {serving.model_ref}",
            )
            log.warning("endpoint %s in %s: rolled back: %s", row.name, env.name, why)
        elif verdict == "next":
            self.routes.set_canary(
                env.name, row.name, candidate.generation, candidate.ready_urls(), rollout.percent
            )
            self._report(
                env,
                row,
                reason=f"{rollout.strategy.text()}: {rollout.percent:g} % of the traffic to generation {candidate.generation}",
            )
        elif verdict == "done":
            self._switch(env, row, key, candidate, serving)

    def _abandon(self, env: Environment, key: tuple[str, str], candidate: Fleet) -> None:
        self.rollouts.pop(key, None)
        self.routes.end_canary(*key)
        self.candidates.pop(key, None)
        candidate.stop()

    def _supervise(
        self, env: Environment, row: Endpoint, key: tuple[str, str], fleet: Fleet
    ) -> None:
        changed = False
        now = time.monotonic()
        for instance in fleet.instances:
            before = instance.state
            fleet.check(instance)
            if instance.state in (EXITED, FAILED):
                if instance.retry_at is None:
                    delay = min(2.0**instance.restarts, fleets.MAX_BACKOFF_S)
                    instance.retry_at = now + delay
                    log.warning(
                        "endpoint %s in %s: instance %s exited (status %s); restarting in %.0f s",
                        row.name,
                        env.name,
                        instance.index,
                        instance.exit_code,
                        delay,
                    )
                elif now >= instance.retry_at:
                    instance.restarts += 1
                    if not fleets.port_free(instance.port):
                        instance.port = self._free_port(env, self._ports_in_use(env.name))
                    fleet.start(instance)
            changed = changed or before != instance.state
        if changed:
            if key in self.rollouts:
                self._restable(env.name, row.name, fleet)
            else:
                self.routes.set(env.name, row.name, fleet.generation, fleet.ready_urls())
            self._report(env, row, fleet=fleet)

    # --- helpers ----------------------------------------------------------------------------

    def _restable(self, env: str, name: str, fleet: Fleet) -> None:
        """New URLs for the stable fleet, keeping the canary's share as it is."""
        with self.routes.lock:
            route = self.routes.table.get((env, name))
            if route is not None:
                route.stable = (fleet.generation, fleet.ready_urls())

    def _stop_all(self, key: tuple[str, str], *, wait: bool = False) -> None:
        self.rollouts.pop(key, None)
        self.routes.remove(*key)
        for table in (self.serving, self.candidates):
            found = table.pop(key, None)
            if found is not None:
                found.stop(wait=wait)
        self.failed.pop(key, None)

    def _fail(self, env: Environment, row: Endpoint, key: tuple[str, str], reason: str) -> None:
        self.failed[key] = row.generation
        self._report(env, row, status=db.FAILED, reason=reason)
        log.warning("endpoint %s in %s failed: %s", row.name, env.name, reason)

    def _report(
        self,
        env: Environment,
        row: Endpoint,
        *,
        fleet: Fleet | None = None,
        **values: Any,
    ) -> None:
        if fleet is not None:
            values["serving"] = {
                "generation": fleet.generation,
                "model_ref": fleet.model_ref,
                "model_digest": fleet.model_digest,
                "format": fleet.manifest.format,
                "instances": [i.describe() for i in fleet.instances],
                "url": self.gateways.get(env.name, "") + f"/endpoints/{row.name}/invocations",
            }
        with env.store.transaction() as session:
            current = db.get(session, row.name)
            if current is None or current.status == DELETING:
                return
            if current.generation != row.generation and "status" in values:
                values.pop("status")  # an update landed meanwhile: it owns the status now
                values.pop("reason", None)
            db.change(session, row.name, **values)

    def _ports_in_use(self, env: str) -> set[int]:
        return {
            i.port
            for table in (self.serving, self.candidates)
            for (e, _), f in table.items()
            if e == env
            for i in f.instances
        }

    def _free_port(self, env: Environment, taken: set[int]) -> int:
        low, high = env.spec.network.port_range
        for port in range(low + 1, high + 1):  # the lowest port is the gateway's
            if port not in taken and fleets.port_free(port):
                return port
        raise LockgateError(f"no free port left in {env.name}'s range [{low}, {high}]")
