"""The actions a rule can run: call a webhook, run a command, start a pipeline.

Each attempt returns an :class:`Outcome` and never raises for a failure of the action itself; a
failure says whether a later attempt may succeed (a timeout, a 503) or never will (a 404, a
pipeline that does not exist). Every action is handed the delivery id, which is the same on
each retry of one delivery, so its receiver can make it idempotent; the pipeline action is
idempotent by itself (the execution is keyed by the delivery id), and so is deploy (promotion
returns the version made before; an endpoint already serving the version is left alone).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from typing import TYPE_CHECKING, Any

from lockgate import __version__
from lockgate.automation import signing
from lockgate.automation.matching import fields, render
from lockgate.errors import LockgateError, NotFoundError, ValidationError
from lockgate.store import params
from lockgate.store.automation import Delivery, Outcome
from lockgate.store.events import Event

if TYPE_CHECKING:
    import httpx

    from lockgate.platform import Environment, Platform

#: Characters of a response or of a command's output kept in the delivery's result.
OUTPUT_LIMIT = 2000
#: HTTP statuses worth retrying; any other 4xx is the request's fault and fails at once.
RETRYABLE_STATUS = {408, 425, 429}
#: Seconds a claim outlives the action's own time limit.
PIPELINE_TIME_S = 60.0


def time_limit(action: dict[str, Any]) -> float:
    """How long one attempt of ``action`` may take."""
    return float(action.get("timeout_s", PIPELINE_TIME_S))


def payload(delivery: Delivery, event: Event, environment: str) -> dict[str, Any]:
    """What a webhook receives, and a command on its stdin."""
    return {
        "delivery": delivery.id,
        "rule": delivery.rule,
        "attempt": delivery.attempts,
        "environment": environment,
        "event": {
            "id": event.id,
            "type": event.type,
            "subject": event.subject,
            "payload": event.payload,
            "created_at": event.created_at,
        },
    }


def run(platform: Platform, env: Environment, delivery: Delivery, event: Event) -> Outcome:
    action = delivery.rule_spec["action"]
    values = fields(event, env.name)
    try:
        if action["kind"] == "webhook":
            return _webhook(env, action, delivery, event, values)
        if action["kind"] == "command":
            return _command(platform, env, action, delivery, event, values)
        if action["kind"] == "pipeline":
            return _pipeline(platform, env, action, delivery, values)
        if action["kind"] == "deploy":
            return _deploy(platform, env, action, values)
        if action["kind"] == "ci":
            return _ci(platform, action, delivery, event)
    except KeyError as exc:
        return Outcome(False, {}, f"cannot fill the action's placeholders: {exc}", retryable=False)
    return Outcome(False, {}, f"unknown action kind {action['kind']!r}", retryable=False)


def _webhook(
    env: Environment,
    action: dict[str, Any],
    delivery: Delivery,
    event: Event,
    values: dict[str, Any],
) -> Outcome:
    import httpx

    try:
        secret = _secret(env, action["secret_parameter"].replace("{env}", env.name))
    except LockgateError as exc:
        return Outcome(False, {}, exc.message, retryable=False)
    body = json.dumps(payload(delivery, event, env.name), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"lockgate/{__version__}",
        "Lockgate-Event": event.type,
        "Lockgate-Delivery": delivery.id,
        signing.HEADER: signing.sign(secret, body),
    }
    url = render(action["url"], values)
    try:
        response = _client().post(url, content=body, headers=headers, timeout=action["timeout_s"])
    except httpx.HTTPError as exc:
        return Outcome(False, {"url": url}, f"POST {url} failed: {exc}")
    result = {"url": url, "http_status": response.status_code, "response": _tail(response.text)}
    if response.is_success:
        return Outcome(True, result)
    retryable = response.status_code >= 500 or response.status_code in RETRYABLE_STATUS
    return Outcome(False, result, f"POST {url} answered {response.status_code}", retryable)


@functools.cache
def _client() -> httpx.Client:
    """One client per process: building one (its TLS context) costs tens of milliseconds."""
    import httpx

    return httpx.Client(follow_redirects=False)


def _secret(env: Environment, name: str) -> str:
    from lockgate.auth import secrets

    with env.store.transaction() as session:
        stored = params.get_parameter(session, name)
    if stored is None or not stored.secure:
        raise NotFoundError(
            f"the webhook's signing secret {name} is not a secure parameter in {env.name}",
            hint=f"Set it: lockgate param put {name} --secure --env {env.name}",
        )
    return secrets.decrypt(env.keys, stored.value)


def _command(
    platform: Platform,
    env: Environment,
    action: dict[str, Any],
    delivery: Delivery,
    event: Event,
    values: dict[str, Any],
) -> Outcome:
    argv = [render(part, values) for part in action["command"]]
    variables = {
        **os.environ,
        "LOCKGATE_HOME": str(platform.home.root),
        "LOCKGATE_ENV": env.name,
        "LOCKGATE_EVENT_ID": event.id,
        "LOCKGATE_EVENT_TYPE": event.type,
        "LOCKGATE_DELIVERY_ID": delivery.id,
        "LOCKGATE_ATTEMPT": str(delivery.attempts),
    }
    stdin = json.dumps(payload(delivery, event, env.name), sort_keys=True)
    try:
        done = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env=variables,
            timeout=action["timeout_s"],
            check=False,
        )
    except FileNotFoundError:
        return Outcome(False, {"command": argv}, f"no such command: {argv[0]}", retryable=False)
    except PermissionError:
        return Outcome(False, {"command": argv}, f"{argv[0]} is not executable", retryable=False)
    except subprocess.TimeoutExpired:
        return Outcome(
            False, {"command": argv}, f"{argv[0]} ran past its {action['timeout_s']} s limit"
        )
    result = {
        "command": argv,
        "exit_code": done.returncode,
        "output": _tail(done.stdout + done.stderr),
    }
    if done.returncode == 0:
        return Outcome(True, result)
    return Outcome(False, result, f"{argv[0]} exited with status {done.returncode}")


def _pipeline(
    platform: Platform,
    env: Environment,
    action: dict[str, Any],
    delivery: Delivery,
    values: dict[str, Any],
) -> Outcome:
    from lockgate.auth.principal import Principal
    from lockgate.pipelines import service

    parameters = {k: render(v, values) for k, v in action.get("parameters", {}).items()}
    try:
        execution = service.start(
            platform,
            Principal(action["run_as"]),
            action["pipeline"],
            parameters,
            env=env.name,
            idempotency_key=f"delivery:{delivery.id}",
        )
    except (NotFoundError, ValidationError) as exc:
        return Outcome(False, {}, exc.message, retryable=False)
    except LockgateError as exc:
        # Refusals (permissions) and conflicts: retrying as the same principal changes nothing.
        return Outcome(False, {}, f"{type(exc).__name__}: {exc.message}", retryable=False)
    result = {"execution": execution.id, "pipeline": f"{execution.pipeline}@{execution.version}"}
    if execution.status == "pending" and execution.lease_owner is None:
        # New, or started by an attempt that died before its driver did: drive it now — or
        # leave it to the daemon's pipeline runner when a daemon runs this home.
        from lockgate.config.daemon_files import running

        if running(platform.home):
            result["driver"] = "daemon"
        else:
            result["log"] = str(service.spawn_driver(platform, execution.id, env.name))
    return Outcome(True, result)


def _deploy(
    platform: Platform, env: Environment, action: dict[str, Any], values: dict[str, Any]
) -> Outcome:
    """Promote (when the endpoint lives elsewhere), then create or update the endpoint.

    Idempotent: promotion returns the version made before, and an endpoint already serving the
    version is left alone.
    """
    from lockgate.auth.principal import Principal
    from lockgate.registry import service as registry
    from lockgate.serving import service as endpoints

    principal = Principal(action["run_as"])
    ref = render(action["model"], values)
    target = action.get("environment") or env.name
    name = action["endpoint"]
    try:
        if target != env.name:
            ref = registry.promote(platform, principal, ref, to=target, source_env=env.name).ref
        try:
            current = endpoints.get(platform, principal, name, env=target)
        except NotFoundError:
            created = endpoints.create(
                platform, principal, name, ref, instances=action["instances"], env=target
            )
            return Outcome(
                True,
                {
                    "endpoint": name,
                    "environment": target,
                    "model": ref,
                    "generation": created.generation,
                },
            )
        if current.model_ref == ref and current.status != "Deleting":
            return Outcome(
                True, {"endpoint": name, "environment": target, "model": ref, "unchanged": True}
            )
        updated = endpoints.update(platform, principal, name, model_ref=ref, env=target)
    except LockgateError as exc:
        return Outcome(False, {}, f"{type(exc).__name__}: {exc.message}", retryable=False)
    return Outcome(
        True,
        {"endpoint": name, "environment": target, "model": ref, "generation": updated.generation},
    )


def _ci(platform: Platform, action: dict[str, Any], delivery: Delivery, event: Event) -> Outcome:
    """Queue the project's CI deploy run; idempotent by delivery (a redelivery finds it)."""
    from lockgate.projects import ci

    try:
        run = ci.enqueue(
            platform,
            action["project"],
            "deploy",
            action["environment"],
            trigger=f"rule {delivery.rule} (event {event.type} {event.subject})",
            key=f"delivery:{delivery.id}",
            inputs={"model": f"{event.payload['group']}/{event.payload['version']}"}
            if event.type == "ModelVersionApprovalChanged"
            else None,
        )
    except (ValidationError, NotFoundError) as exc:  # the rule or project is wrong: no retry
        return Outcome(False, {}, f"{type(exc).__name__}: {exc.message}", retryable=False)
    except LockgateError as exc:  # e.g. a busy store: the delivery is tried again
        return Outcome(False, {}, f"{type(exc).__name__}: {exc.message}", retryable=True)
    return Outcome(
        True, {"ci_run": run.id, "status": run.status, "environment": action["environment"]}
    )


def _tail(text: str) -> str:
    return text if len(text) <= OUTPUT_LIMIT else "…" + text[-OUTPUT_LIMIT:]
