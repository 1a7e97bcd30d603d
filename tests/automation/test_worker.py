"""The event worker end to end: real rules applied by infra, real approvals, a real HTTP receiver
on loopback that checks signatures itself, real commands and a real pipeline run."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lockgate.auth.principal import Principal
from lockgate.automation import service as automation
from lockgate.automation.signing import verify
from lockgate.automation.worker import Worker
from lockgate.config.home import Home
from lockgate.infra import service as infra
from lockgate.parameters import service as parameters
from lockgate.platform import Platform
from lockgate.registry import service as registry
from lockgate.store.automation import Delivery
from support import run_cli

LEAD = Principal("user:lena")
SECRET = "s3cret-for-the-test"
PROJECT = Path(__file__).parents[1] / "pipelines" / "projects" / "basic"

TEAM = """
[[bindings]]
principal = "user:lena"
role = "lead-data-scientist"
environments = ["dev", "preprod", "prod"]

[[bindings]]
principal = "service:automation"
role = "ci"
environments = ["dev"]
"""


class Receiver:
    """An HTTP server on 127.0.0.1 that records requests and answers with scripted statuses."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"thanks")

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _with_rules(home: Home, admin: Principal, rules: str) -> Platform:
    home.platform_file.write_text(home.platform_file.read_text() + TEAM + rules)
    platform = Platform.open(home)
    infra.apply(platform, admin, confirm=lambda plan: True)
    return platform


def _webhook_rule(url: str) -> str:
    return f"""
[rules.notify]
event = "ModelVersionApprovalChanged"
environments = ["dev"]
match = {{ group = "abalone", to = "Approved" }}
max_attempts = 3
backoff_s = 0.05
action = {{ kind = "webhook", url = "{url}/hooks/{{group}}", secret_parameter = "/lockgate/{{env}}/hook-secret", timeout_s = 5 }}
"""


def _register(platform: Platform, admin: Principal, tmp_path: Path, group: str) -> str:
    folder = tmp_path / f"model-{group}-{time.monotonic_ns()}"
    folder.mkdir()
    (folder / "model.bin").write_bytes(folder.name.encode())
    return registry.register(platform, admin, folder, group=group).ref


def _until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def _settle(worker: Worker, platform: Platform, rule: str) -> list[Delivery]:
    """Run the worker until every delivery of ``rule`` is finished."""

    def finished() -> list[Delivery] | None:
        worker.run_once()
        found = automation.list_deliveries(platform, LEAD, env="dev", rule=rule)
        return found if found and all(d.finished_at for d in found) else None

    return _until(finished)


def test_an_approval_is_delivered_signed_once_and_only_what_the_rule_names(
    platform: Platform, home: Home, admin: Principal, receiver: Receiver, tmp_path: Path
) -> None:
    platform = _with_rules(home, admin, _webhook_rule(receiver.url))
    parameters.put(platform, admin, "/lockgate/dev/hook-secret", SECRET, secure=True)
    approved = _register(platform, admin, tmp_path, "abalone")
    rejected = _register(platform, admin, tmp_path, "abalone")
    other = _register(platform, admin, tmp_path, "churn")
    registry.set_status(platform, LEAD, approved, "Approved", comment="good")
    registry.set_status(platform, LEAD, rejected, "Rejected", comment="worse")
    registry.set_status(platform, LEAD, other, "Approved", comment="fine")
    worker = Worker(platform, ["dev"])

    [delivery] = _settle(worker, platform, "notify")
    worker.run_once()  # nothing more to do: no second delivery

    assert delivery.status == "succeeded" and delivery.attempts == 1
    assert delivery.result == {
        "url": f"{receiver.url}/hooks/abalone",
        "http_status": 200,
        "response": "thanks",
    }
    [request] = receiver.requests
    body, headers = request["body"], request["headers"]
    assert request["path"] == "/hooks/abalone"
    # The receiver's own check, with nothing but the standard library.
    fields = dict(part.split("=", 1) for part in headers["Lockgate-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), fields["t"].encode() + b"." + body, hashlib.sha256)
    assert hmac.compare_digest(fields["v1"], expected.hexdigest())
    assert abs(time.time() - int(fields["t"])) < 60
    assert verify(SECRET, body, headers["Lockgate-Signature"])
    assert not verify("another secret", body, headers["Lockgate-Signature"])
    assert not verify(SECRET, body + b" ", headers["Lockgate-Signature"])
    doc = json.loads(body)
    assert headers["Lockgate-Delivery"] == doc["delivery"] == delivery.id
    assert headers["Lockgate-Event"] == "ModelVersionApprovalChanged"
    assert doc["event"]["payload"]["to"] == "Approved" and doc["event"]["subject"] == approved
    assert SECRET not in body.decode()


def test_failures_are_retried_with_backoff_and_a_4xx_is_not(
    platform: Platform, home: Home, admin: Principal, receiver: Receiver, tmp_path: Path
) -> None:
    platform = _with_rules(home, admin, _webhook_rule(receiver.url))
    parameters.put(platform, admin, "/lockgate/dev/hook-secret", SECRET, secure=True)
    receiver.statuses = [503, 500]
    registry.set_status(platform, LEAD, _register(platform, admin, tmp_path, "abalone"), "Approved")
    worker = Worker(platform, ["dev"])

    [delivery] = _settle(worker, platform, "notify")

    assert delivery.status == "succeeded" and delivery.attempts == 3
    assert [h["outcome"] for h in delivery.history] == ["failed", "failed", "succeeded"]
    assert "answered 503" in delivery.history[0]["error"]
    ids = {r["headers"]["Lockgate-Delivery"] for r in receiver.requests}
    assert ids == {delivery.id}  # the same id on every retry: the receiver can deduplicate

    receiver.statuses = [404]
    registry.set_status(platform, LEAD, _register(platform, admin, tmp_path, "abalone"), "Approved")
    failed = _settle(worker, platform, "notify")[-1]
    assert (
        failed.status == "failed" and failed.attempts == 1 and "answered 404" in failed.last_error
    )

    automation.redeliver(platform, admin, failed.id, env="dev")
    again = _settle(worker, platform, "notify")[-1]
    assert again.id == failed.id and again.status == "succeeded" and again.attempts == 2


def test_a_missing_secret_fails_clearly_without_retrying(
    platform: Platform, home: Home, admin: Principal, receiver: Receiver, tmp_path: Path
) -> None:
    platform = _with_rules(home, admin, _webhook_rule(receiver.url))
    registry.set_status(platform, LEAD, _register(platform, admin, tmp_path, "abalone"), "Approved")

    [delivery] = _settle(Worker(platform, ["dev"]), platform, "notify")

    assert delivery.status == "failed" and delivery.attempts == 1
    assert "/lockgate/dev/hook-secret is not a secure parameter in dev" in delivery.last_error
    assert receiver.requests == []


def test_a_command_gets_the_event_and_is_retried_on_failure(
    platform: Platform, home: Home, admin: Principal, tmp_path: Path
) -> None:
    script = tmp_path / "hook.py"
    out = tmp_path / "hook.jsonl"
    script.write_text(
        "import json, os, sys\n"
        "doc = json.load(sys.stdin)\n"
        f"with open({str(out)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'doc': doc,\n"
        "        'env': {k: v for k, v in os.environ.items() if k.startswith('LOCKGATE_')}}) + '\\n')\n"
        "sys.exit(1 if os.environ['LOCKGATE_ATTEMPT'] == '1' else 0)\n"
    )
    platform = _with_rules(
        home,
        admin,
        f"""
[rules.script]
event = "ModelVersionRegistered"
match = {{ group = "scripted" }}
backoff_s = 0.05
action = {{ kind = "command", command = ["{sys.executable}", "{script}", "{{group}}/{{version}}"] }}
""",
    )
    ref = _register(platform, admin, tmp_path, "scripted")
    _register(platform, admin, tmp_path, "unscripted")

    [delivery] = _settle(Worker(platform, ["dev"]), platform, "script")

    assert delivery.status == "succeeded" and delivery.attempts == 2
    assert delivery.history[0]["error"].endswith("exited with status 1")
    runs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["argv"] for r in runs] == [[ref], [ref]]
    assert (
        runs[0]["env"]["LOCKGATE_DELIVERY_ID"]
        == runs[1]["env"]["LOCKGATE_DELIVERY_ID"]
        == delivery.id
    )
    assert runs[0]["env"]["LOCKGATE_ENV"] == "dev"
    assert runs[0]["doc"]["event"]["payload"]["group"] == "scripted"


@pytest.mark.slow
def test_an_approval_starts_a_pipeline_once_as_the_rules_principal(
    platform: Platform, home: Home, admin: Principal, tmp_path: Path
) -> None:
    from lockgate.automation import actions
    from lockgate.pipelines import service as pipelines

    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    platform = _with_rules(
        home,
        admin,
        """
[rules.retrain]
event = "ModelVersionApprovalChanged"
environments = ["dev"]
match = { group = "trigger", to = "Approved" }
action = { kind = "pipeline", pipeline = "basic", parameters = { n = "{version}" }, run_as = "service:automation" }
""",
    )
    pipelines.upsert(platform, admin, f"{project}/pipe.py:basic")
    registry.set_status(platform, LEAD, _register(platform, admin, tmp_path, "trigger"), "Approved")

    [delivery] = _settle(Worker(platform, ["dev"]), platform, "retrain")

    assert delivery.status == "succeeded", delivery.last_error
    execution_id = delivery.result["execution"]
    done = _until(
        lambda: (e := pipelines.get_execution(platform, admin, execution_id)).finished_at and e
    )
    assert done.status == "succeeded" and done.created_by == "service:automation"
    assert done.parameters["n"] == 1
    # A redelivery of the same delivery (its worker died after starting) starts nothing new.
    env = platform.ready("dev")
    again = actions.run(platform, env, delivery, _event_of(platform, delivery))
    assert again.ok and again.result["execution"] == execution_id
    assert len(pipelines.list_executions(platform, admin, pipeline="basic")) == 1


def _event_of(platform: Platform, delivery: Delivery) -> Any:
    from lockgate.store import events

    with platform.ready("dev").store.read() as session:
        return events.get_event(session, delivery.event_id)


def test_cli_lists_rules_and_deliveries(
    platform: Platform, home: Home, admin: Principal, receiver: Receiver, tmp_path: Path
) -> None:
    platform = _with_rules(home, admin, _webhook_rule(receiver.url))
    parameters.put(platform, admin, "/lockgate/dev/hook-secret", SECRET, secure=True)
    registry.set_status(platform, LEAD, _register(platform, admin, tmp_path, "abalone"), "Approved")

    worked = run_cli(home, "events", "worker", "--once", "--env", "dev")
    assert worked.code == 0 and "notify" in worked.out and "succeeded" in worked.out

    [rule] = json.loads(run_cli(home, "rules", "list", "--json").out)
    assert rule["environment"] == "dev" and rule["name"] == "notify"
    assert rule["spec"]["match"] == {"group": "abalone", "to": "Approved"}
    assert rule["deliveries"] == {"succeeded": 1}
    [delivery] = json.loads(run_cli(home, "events", "deliveries", "--json").out)
    assert delivery["status"] == "succeeded"
    shown = run_cli(home, "events", "delivery", delivery["id"])
    assert "succeeded" in shown.out and "#1" in shown.out
    refused = run_cli(home, "events", "redeliver", delivery["id"])
    assert refused.code == 7 and "only a failed delivery is redelivered" in refused.err
    missing = run_cli(home, "events", "delivery", "01NOPE")
    assert missing.code == 5 and "lockgate events deliveries" in missing.err
    bad = run_cli(home, "events", "deliveries", "--status", "lost")
    assert bad.code == 4 and "pending, running, succeeded, failed" in bad.err
    events = json.loads(run_cli(home, "events", "list", "--json").out)
    assert all(e["dispatched_at"] for e in events)


@pytest.mark.slow
def test_a_killed_workers_delivery_is_delivered_again(
    platform: Platform, home: Home, admin: Principal, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess

    script = tmp_path / "hook.py"
    log = tmp_path / "hook.log"
    script.write_text(
        "import os, sys, time\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(os.environ['LOCKGATE_DELIVERY_ID'] + ' ' + os.environ['LOCKGATE_ATTEMPT'] + '\\n')\n"
        "if os.environ['LOCKGATE_ATTEMPT'] == '1':\n"
        "    time.sleep(60)\n"
    )
    platform = _with_rules(
        home,
        admin,
        f"""
[rules.slow]
event = "ModelVersionRegistered"
action = {{ kind = "command", command = ["{sys.executable}", "{script}"], timeout_s = 2 }}
""",
    )
    _register(platform, admin, tmp_path, "abalone")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lockgate",
            "events",
            "worker",
            "--env",
            "dev",
            "--lease-margin",
            "0",
        ],
        env={**os.environ, "LOCKGATE_HOME": str(home.root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _until(lambda: log.exists() and log.read_text())
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its hook, mid-delivery
        worker.wait()
    [running] = automation.list_deliveries(platform, LEAD, env="dev", rule="slow")
    assert running.status == "running" and running.attempts == 1

    [delivery] = _settle(Worker(platform, ["dev"], lease_margin_s=0), platform, "slow")

    assert delivery.status == "succeeded" and delivery.attempts == 2
    assert delivery.history[0]["outcome"] == "abandoned"
    assert "stopped before finishing attempt 1" in delivery.history[0]["error"]
    assert log.read_text().split("\n")[:2] == [f"{delivery.id} 1", f"{delivery.id} 2"]
