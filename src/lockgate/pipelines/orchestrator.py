"""The orchestrator: drives one execution to its end, from any starting point.

It claims the execution's lease (renewed while it works), re-attaches to step processes a killed
orchestrator left running, then loops: decide what each pending step needs (run it, take it from
the cache, evaluate a condition, fail, register a model, skip a branch not taken), submit what can
run to the executor, and record what ended. Every state change is a short transaction, so a
``kill -9`` at any moment leaves rows another orchestrator can resume from; a step is marked
succeeded only after its output is stored and recorded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lockgate.errors import ConflictError, NotFoundError
from lockgate.ids import isoformat, utcnow
from lockgate.pipelines import cache
from lockgate.pipelines.attempts import announced, build_task
from lockgate.pipelines.code import extract
from lockgate.pipelines.compiler import topological_order
from lockgate.pipelines.executors.base import Executor, TaskHandle
from lockgate.pipelines.expressions import OPS, resolve, show
from lockgate.pipelines.leases import owner_id, owner_is_gone
from lockgate.pipelines.task import StepResult, StepTask
from lockgate.platform import Environment
from lockgate.store import pipelines as db
from lockgate.store.pipelines import Execution, StepRun

LEASE_S = 15.0
TERMINAL = frozenset({"succeeded", "cached", "failed", "skipped", "stopped"})
DONE_OK = frozenset({"succeeded", "cached"})


@dataclass(frozen=True)
class StepEvent:
    step: str
    status: str
    run: StepRun


class Orchestrator:
    """Runs one execution of one environment with an :class:`Executor`."""

    def __init__(
        self,
        env: Environment,
        execution_id: str,
        executor: Executor,
        run_dir: Path,
        *,
        on_event: Callable[[StepEvent], None] = lambda event: None,
        steal_from_dead: bool = True,
    ) -> None:
        self.env = env
        self.execution_id = execution_id
        self.executor = executor
        self.run_dir = run_dir
        self.on_event = on_event
        self.owner = owner_id()
        self.steal_from_dead = steal_from_dead
        self.handles: dict[str, str] = {}  # handle id -> step
        #: Set when another orchestrator took the lease: its steps are then not ours to stop.
        self.lease_lost = False

    # ------------------------------------------------------------ entry point

    def run(self) -> Execution:
        """Drive the execution to a final state and return it."""
        self._claim()
        try:
            return self._loop()
        except KeyboardInterrupt:
            self._stop(self._runs(), reason="interrupted (Ctrl-C)")
            raise
        finally:
            with self.env.store.transaction() as s:
                db.release(s, self.execution_id, self.owner)

    def _claim(self) -> None:
        with self.env.store.transaction() as s:
            execution = db.get_execution(s, self.execution_id)
            if execution is None:
                raise NotFoundError(
                    f"execution {self.execution_id} does not exist in {self.env.name}."
                )
            if execution.status not in db.ACTIVE:
                raise ConflictError(
                    f"execution {self.execution_id} is {execution.status}; there is nothing to resume.",
                    hint=f"Use `lockgate pipeline retry {self.execution_id}` to re-run its failed steps.",
                )
            dead = (
                execution.lease_owner
                if execution.lease_owner
                and self.steal_from_dead
                and owner_is_gone(execution.lease_owner)
                else None
            )
            if not db.claim(
                s, self.execution_id, self.owner, time.time(), LEASE_S, steal_from=dead
            ):
                raise ConflictError(
                    f"execution {self.execution_id} is being run by {execution.lease_owner}.",
                    hint="Wait for it, or stop it with `lockgate pipeline stop`.",
                )
            version = db.get_version(s, execution.pipeline, execution.version)
            assert version is not None
            db.update_execution(
                s,
                self.execution_id,
                status="running",
                started_at=execution.started_at or isoformat(utcnow()),
            )
        self.execution = execution
        self.definition = version.definition
        self.steps: dict[str, Any] = version.definition["steps"]
        self.order = topological_order(version.definition)
        self.params = execution.parameters
        code = self.env.artifacts.get_bytes(version.snapshot_digest)
        self.exec_dir = self.run_dir / "executions" / self.execution_id
        # Each execution unpacks its own copy: a step that writes into its working folder cannot
        # change the code another execution runs.
        self.code_dir = extract(code, self.exec_dir / "code")

    # ------------------------------------------------------------ the loop

    def _loop(self) -> Execution:
        runs = self._runs()
        self._adopt(runs)
        last_renew = time.monotonic()
        failed: str | None = None
        while True:
            if time.monotonic() - last_renew > LEASE_S / 3:
                self._renew()
                last_renew = time.monotonic()
            runs = self._runs()
            if self._stop_requested():
                return self._stop(runs)
            if failed is None:
                failed = self._schedule(runs)
                runs = self._runs()
            if failed is not None and self.executor.running() == 0:
                return self._finish(runs, "failed", failed)
            if all(r.status in TERMINAL for r in runs.values()):
                bad = [n for n in self.order if runs[n].status == "failed"]
                reason = f"step {bad[0]!r} failed: {runs[bad[0]].reason}" if bad else None
                return self._finish(runs, "failed" if bad else "succeeded", reason)
            for handle, result in self.executor.wait(
                timeout=0.05 if self.executor.running() else 0.0
            ):
                self._record(handle, result)
            if not self.executor.running():
                time.sleep(self._idle_wait(runs))

    def _idle_wait(self, runs: dict[str, StepRun]) -> float:
        waits = [
            r.not_before - time.time()
            for r in runs.values()
            if r.status == "pending" and r.not_before
        ]
        return max(0.0, min(min(waits, default=0.0), 0.2))

    def _runs(self) -> dict[str, StepRun]:
        with self.env.store.transaction() as s:
            return db.step_runs(s, self.execution_id)

    def _renew(self) -> None:
        with self.env.store.transaction() as s:
            if not db.renew(s, self.execution_id, self.owner, time.time(), LEASE_S):
                self.lease_lost = True
                raise ConflictError(
                    f"execution {self.execution_id}: this orchestrator lost its lease."
                )

    def _stop_requested(self) -> bool:
        with self.env.store.transaction() as s:
            execution = db.get_execution(s, self.execution_id)
        return bool(execution and execution.stop_requested)

    def _set(self, step: str, *, notify: bool = True, **values: Any) -> StepRun:
        with self.env.store.transaction() as s:
            db.update_step(s, self.execution_id, step, **values)
            run = db.step_runs(s, self.execution_id)[step]
        if notify:
            self.on_event(StepEvent(step, run.status, run))
        return run

    # ------------------------------------------------------------ deciding what each step needs

    def _schedule(self, runs: dict[str, StepRun]) -> str | None:
        """Advance every pending step that can move; returns a failure reason to stop on."""
        for name in self.order:
            run = runs[name]
            if run.status != "pending":
                continue
            step = self.steps[name]
            deps = [runs[d] for d in step["depends_on"]]
            if any(d.status not in TERMINAL for d in deps):
                continue
            skip = self._skip_reason(step, runs)
            if skip:
                runs[name] = self._set(
                    name, status="skipped", reason=skip, finished_at=isoformat(utcnow())
                )
                continue
            kind = step["kind"]
            if kind == "fail":
                message = step["options"]["message"]
                self._set(name, status="failed", reason=message, finished_at=isoformat(utcnow()))
                return f"step {name!r} failed: {message}"
            if kind == "condition":
                runs[name] = self._condition(name, step, runs)
            elif kind == "register_model":
                runs[name] = self._register(name, step, runs)
            elif self._submit_or_cache(name, step, run, runs) == "busy":
                break
        return None

    def _skip_reason(self, step: dict[str, Any], runs: dict[str, StepRun]) -> str | None:
        for dep in step["depends_on"]:
            if runs[dep].status in ("failed", "stopped"):
                return f"upstream step {dep!r} {runs[dep].status}"
        for when in step.get("when", []):
            cond = runs[when["condition"]]
            if cond.status == "skipped":
                return f"condition {when['condition']!r} was skipped"
            if (self._output_value(cond) or {}).get("value") != when["branch"]:
                return f"condition {when['condition']!r} was {str(not when['branch']).lower()}"
        for dep in step["depends_on"]:
            if runs[dep].status == "skipped" and dep not in {
                w["condition"] for w in step.get("when", [])
            }:
                return f"it needs the output of skipped step {dep!r}"
        return None

    def _output_value(self, run: StepRun) -> Any:
        if run.output_digest is None:
            return None
        return json.loads(self.env.artifacts.get_bytes(run.output_digest))

    def _resolve(self, ref: dict[str, Any], runs: dict[str, StepRun]) -> Any:
        return resolve(ref, self.params, lambda step: self._output_value(runs[step]))

    def _condition(self, name: str, step: dict[str, Any], runs: dict[str, StepRun]) -> StepRun:
        expr = step["options"]["expr"]
        try:
            left, right = self._resolve(expr["left"], runs), self._resolve(expr["right"], runs)
            value = bool(OPS[expr["op"]](left, right))
        except (KeyError, TypeError) as exc:
            return self._set(
                name,
                status="failed",
                reason=f"condition cannot be evaluated: {exc}",
                finished_at=isoformat(utcnow()),
            )
        document = {"value": value, "left": left, "right": right, "op": expr["op"]}
        digest = self.env.artifacts.put_bytes(
            json.dumps(document, sort_keys=True, default=str).encode()
        )
        reason = f"{show(left)} {expr['op']} {show(right)} is {str(value).lower()}"
        now = isoformat(utcnow())
        return self._set(
            name,
            status="succeeded",
            output_type="json",
            output_digest=digest,
            reason=reason,
            started_at=now,
            finished_at=now,
            duration_s=0.0,
        )

    def _register(self, name: str, step: dict[str, Any], runs: dict[str, StepRun]) -> StepRun:
        """A registry version of the model, with its metrics and lineage, in one transaction."""
        from lockgate.registry.service import register_version

        model_step = step["inputs"]["model"]["step"]
        model = runs[model_step]
        metrics_ref = step["inputs"].get("metrics")
        metrics = self._resolve(metrics_ref, runs) if metrics_ref else {}
        lineage = {
            "pipeline": f"{self.execution.pipeline}@{self.execution.version}",
            "execution_id": self.execution_id,
            "step": name,
            "model_step": model_step,
            "code_digest": self.steps[model_step].get("code_digest"),
            "inputs": (model.cache_components or {}).get("inputs", {}),
            "parameters": self.params,
        }
        now = isoformat(utcnow())
        with self.env.store.transaction() as s:
            version = register_version(
                s,
                group=step["options"]["group"],
                model_digest=model.output_digest or "",
                metrics=metrics,
                lineage=lineage,
                by=self.execution.created_by,
                status=step["options"]["approval"],
            )
            document = {
                "group": version.group,
                "version": version.version,
                "model_digest": version.model_digest,
                "approval": version.status,
                "metrics": metrics,
            }
            digest = self.env.artifacts.put_bytes(json.dumps(document, sort_keys=True).encode())
            db.record_artifact(
                s,
                digest=digest,
                type_="json",
                execution_id=self.execution_id,
                step=name,
                inputs={"model": model.output_digest or ""},
                code_digest=None,
                at=now,
            )
            db.update_step(
                s,
                self.execution_id,
                name,
                status="succeeded",
                output_type="json",
                output_digest=digest,
                reason=f"registered {version.ref} ({version.status})",
                started_at=now,
                finished_at=now,
                duration_s=0.0,
            )
            run = db.step_runs(s, self.execution_id)[name]
        self.on_event(StepEvent(name, run.status, run))
        return run

    # ------------------------------------------------------------ steps that run in a process

    def _inputs(self, step: dict[str, Any], runs: dict[str, StepRun]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for arg, ref in step["inputs"].items():
            if "step" in ref and not ref.get("key"):
                out[arg] = {
                    "digest": runs[ref["step"]].output_digest,
                    "type": runs[ref["step"]].output_type,
                }
            elif "param" in ref:
                out[arg] = {"param": ref["param"], "value": self.params[ref["param"]]}
            else:
                out[arg] = {"value": self._resolve(ref, runs)}
        if step["kind"] == "transform":
            out["input_file"] = {"value": step["options"]["input_file"]}
            out["drop"] = {"value": step["options"]["drop"]}
        return out

    def _submit_or_cache(
        self, name: str, step: dict[str, Any], run: StepRun, runs: dict[str, StepRun]
    ) -> str:
        if run.not_before and run.not_before > time.time():
            return "waiting"
        inputs = self._inputs(step, runs)
        parts = cache.components(step, inputs, self.definition.get("project_data"))
        key = cache.key_of(parts)
        settings = step.get("settings", {})
        if settings.get("cache", True) and run.attempt == 0:
            with self.env.store.transaction() as s:
                hit = db.get_cache_entry(s, key)
            if hit and (
                hit["output_digest"] is None
                or self._stored(hit["output_digest"], hit["output_type"])
            ):
                now = isoformat(utcnow())
                self._set(
                    name,
                    status="cached",
                    cache_key=key,
                    cache_components=parts,
                    cached_from=hit["execution_id"],
                    output_type=hit["output_type"],
                    output_digest=hit["output_digest"],
                    reason=f"cache hit from execution {hit['execution_id']}",
                    started_at=now,
                    finished_at=now,
                    duration_s=0.0,
                )
                return "cached"
        if self.executor.running() >= self.executor.max_parallel:
            return "busy"
        attempt = run.attempt + 1
        task = self._task(name, step, attempt, inputs)
        Path(task.workdir).mkdir(parents=True, exist_ok=True)
        with open(task.log_path, "a", encoding="utf-8") as log:
            log.write(f"--- {isoformat(utcnow())} attempt {attempt} of step {name}\n")
        # Record the attempt before starting it: if this process dies in between, a resume
        # sees a running attempt it cannot re-attach to and starts the next attempt, in a
        # folder of its own, instead of a second copy of this one.
        self._set(
            name,
            status="running",
            attempt=attempt,
            cache_key=key,
            cache_components=parts,
            handle=None,
            started_at=isoformat(utcnow()),
            reason=None,
        )
        handle = self.executor.submit(task)
        self.handles[handle.id] = name
        self._set(name, handle={"id": handle.id, **handle.info}, notify=False)
        return "submitted"

    def _stored(self, digest: str, output_type: str) -> bool:
        """Whether a cached output is still whole in the artifact store."""
        from lockgate.errors import LockgateError

        if output_type in ("Dataset", "Model"):
            return self.env.artifacts.has_tree(digest)
        try:
            self.env.artifacts.get_bytes(digest)
        except LockgateError:
            return False
        return True

    def _task(
        self, name: str, step: dict[str, Any], attempt: int, inputs: dict[str, dict[str, Any]]
    ) -> StepTask:
        task = build_task(
            execution_id=self.execution_id,
            name=name,
            step=step,
            attempt=attempt,
            inputs=inputs,
            exec_dir=self.exec_dir,
            code_dir=self.code_dir,
            artifact_url=self.env.artifacts.url,
        )
        if self.execution.project is None:
            return task
        from lockgate.parameters import projects

        # Read at each attempt, so a rotated secret reaches the next one; the step's own
        # settings win over the project's variables.
        return replace(
            task, env={**projects.environment(self.env, self.execution.project), **task.env}
        )

    def _adopt(self, runs: dict[str, StepRun]) -> None:
        """Re-attach to attempts a previous orchestrator left running, or queue them again."""
        for name, run in runs.items():
            if run.status != "running":
                continue
            step = self.steps[name]
            task = self._task(name, step, run.attempt, self._inputs(step, runs))
            info = run.handle or announced(task)
            handle = self.executor.adopt(task, info) if info else None
            if handle is None:
                self._set(
                    name,
                    status="pending",
                    reason="its orchestrator died; running it again",
                    handle=None,
                )
            else:
                self.handles[handle.id] = name

    def _record(self, handle: TaskHandle, result: StepResult) -> None:
        name = self.handles.pop(handle.id)
        step = self.steps[name]
        now = isoformat(utcnow())
        with self.env.store.transaction() as s:
            run = db.step_runs(s, self.execution_id)[name]
            if result.ok:
                inputs = {k: v for k, v in (run.cache_components or {}).get("inputs", {}).items()}
                if result.output_digest:
                    db.record_artifact(
                        s,
                        digest=result.output_digest,
                        type_=result.output_type or "json",
                        execution_id=self.execution_id,
                        step=name,
                        inputs=inputs,
                        code_digest=step.get("code_digest"),
                        at=now,
                    )
                if step.get("settings", {}).get("cache", True) and run.cache_key:
                    db.put_cache_entry(
                        s,
                        cache_key=run.cache_key,
                        pipeline=self.execution.pipeline,
                        step=name,
                        output_type=result.output_type or "none",
                        output_digest=result.output_digest,
                        components=run.cache_components or {},
                        execution_id=self.execution_id,
                        at=now,
                    )
                db.update_step(
                    s,
                    self.execution_id,
                    name,
                    status="succeeded",
                    output_type=result.output_type,
                    output_digest=result.output_digest,
                    finished_at=now,
                    duration_s=result.duration_s,
                    reason=result.note,
                )
            elif (
                run.attempt <= int(step.get("settings", {}).get("retries", 0))
                and result.error != "cancelled"
            ):
                backoff = float(step.get("settings", {}).get("backoff_s", 1.0)) * 2 ** (
                    run.attempt - 1
                )
                db.update_step(
                    s,
                    self.execution_id,
                    name,
                    status="pending",
                    reason=f"attempt {run.attempt} failed: {result.error}; retrying in {backoff:g}s",
                    not_before=time.time() + backoff,
                    handle=None,
                )
            else:
                db.update_step(
                    s,
                    self.execution_id,
                    name,
                    status="failed",
                    reason=result.error,
                    finished_at=now,
                    duration_s=result.duration_s,
                )
            updated = db.step_runs(s, self.execution_id)[name]
        self.on_event(StepEvent(name, updated.status, updated))

    # ------------------------------------------------------------ ending

    def _finish(self, runs: dict[str, StepRun], status: str, reason: str | None) -> Execution:
        now = isoformat(utcnow())
        with self.env.store.transaction() as s:
            for name, run in runs.items():
                if run.status == "pending":
                    db.update_step(
                        s,
                        self.execution_id,
                        name,
                        status="skipped",
                        reason="the execution failed before it ran",
                        finished_at=now,
                    )
            db.update_execution(s, self.execution_id, status=status, reason=reason, finished_at=now)
            final = db.get_execution(s, self.execution_id)
        assert final is not None
        return final

    def _stop(self, runs: dict[str, StepRun], reason: str = "stopped by request") -> Execution:
        for handle_id in list(self.handles):
            self.executor.cancel(TaskHandle(handle_id))
        deadline = time.monotonic() + 10
        while self.handles and time.monotonic() < deadline:
            for handle, result in self.executor.wait(timeout=0.1):
                if result.ok:  # it finished before the cancel reached it: keep its output
                    self._record(handle, result)
                    continue
                name = self.handles.pop(handle.id)
                self._set(
                    name,
                    status="stopped",
                    reason=reason,
                    finished_at=isoformat(utcnow()),
                )
        now = isoformat(utcnow())
        with self.env.store.transaction() as s:
            for name, run in db.step_runs(s, self.execution_id).items():
                if run.status in ("pending", "running"):
                    db.update_step(
                        s,
                        self.execution_id,
                        name,
                        status="stopped" if run.status == "running" else "skipped",
                        reason=reason,
                        finished_at=now,
                    )
            db.update_execution(
                s, self.execution_id, status="stopped", reason=reason, finished_at=now
            )
            final = db.get_execution(s, self.execution_id)
        assert final is not None
        return final
