"""The daemon for real: `lockgate up --detach` on loopback ports, real instance processes, real
kills. Each test gets its own home with ports no other test uses."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import LEAD, ROW, _approved, _gateway, _until, make_model
from lockgate.auth.principal import Principal
from lockgate.errors import ConflictError, NotFoundError, ValidationError
from lockgate.infra import service as infra
from lockgate.platform import Platform
from lockgate.registry import service as registry
from lockgate.serving import service as endpoints
from support import run_cli

pytestmark = pytest.mark.slow


def test_an_endpoint_from_create_to_delete(
    served: Platform, admin: Principal, tmp_path: Path
) -> None:
    home = served.home
    ref = _approved(served, admin, make_model(tmp_path / "m1"))
    created = run_cli(home, "endpoint", "create", "lin", "--model", ref, "--instances", "2")
    assert created.code == 0, created.err
    assert "lin is InService" in created.out

    answered = run_cli(home, "endpoint", "invoke", "lin", "--data", ROW)
    assert answered.code == 0 and json.loads(answered.out) == pytest.approx([14.0])
    gateway = f"{_gateway(served)}/endpoints/lin/invocations"
    anonymous = httpx.post(gateway, content=ROW.encode())
    assert anonymous.status_code == 401 and "needs Authorization" in anonymous.json()["error"]
    forged = httpx.post(gateway, content=ROW.encode(), headers={"Authorization": "Bearer x.y.z"})
    assert forged.status_code == 401
    token = run_cli(home, "auth", "login", "--env", "dev").out.strip()
    bearer = {"Authorization": f"Bearer {token}"}
    runtime = httpx.post(
        gateway,
        content=b"1,2,3\n0,0,1\n",
        headers={"Content-Type": "text/csv", "Accept": "text/csv", **bearer},
    )
    assert runtime.status_code == 200 and runtime.headers["content-type"] == "text/csv"
    assert [float(v) for v in runtime.text.split()] == pytest.approx([14.0, 3.0])
    bad = httpx.post(gateway, content=b"[[1, 2]]", headers=bearer)
    assert bad.status_code == 400 and "expects 3 features" in bad.json()["error"]
    missing = httpx.post(
        f"{_gateway(served)}/endpoints/nope/invocations", content=ROW.encode(), headers=bearer
    )
    assert missing.status_code == 404 and "no endpoint nope in dev" in missing.json()["error"]
    from lockgate.auth import credentials
    from lockgate.store import iam

    with served.env("dev").store.transaction() as session:
        iam.add_binding(session, "user:vic", "viewer")  # may read endpoints, not invoke them
    viewer = credentials.login(served, Principal("user:vic"), "dev")
    denied = httpx.post(
        gateway, content=ROW.encode(), headers={"Authorization": f"Bearer {viewer}"}
    )
    assert denied.status_code == 403 and "endpoint:invoke" in denied.json()["error"]

    info = json.loads((home.run_dir / "daemon.json").read_text())
    api = info["api_url"]
    assert (
        "/api/v1/environments/{env}/endpoints" in httpx.get(f"{api}/openapi.json").json()["paths"]
    )
    assert httpx.get(f"{api}/docs").status_code == 200
    refused = httpx.get(f"{api}/api/v1/environments/dev/endpoints")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    [listed] = httpx.get(f"{api}/api/v1/environments/dev/endpoints", headers=bearer).json()
    assert listed["status"] == "InService" and listed["model_ref"] == ref
    wrong_env = httpx.get(f"{api}/api/v1/environments/preprod/endpoints", headers=bearer)
    assert wrong_env.status_code == 401 and "not for environment preprod" in wrong_env.text
    via_api = httpx.post(
        f"{api}/api/v1/environments/dev/endpoints/lin/invocations",
        content=ROW.encode(),
        headers=bearer,
    )
    assert via_api.json() == pytest.approx([14.0])
    whoami = httpx.get(f"{api}/api/v1/whoami", headers=bearer).json()
    assert whoami["principal"] == admin.name and whoami["via"] == "login"

    shown = json.loads(run_cli(home, "endpoint", "show", "lin", "--json").out)
    instances = shown["serving"]["instances"]
    assert [i["state"] for i in instances] == ["ready", "ready"]
    metrics = httpx.get(f"http://127.0.0.1:{instances[0]['port']}/metrics").text
    assert "lockgate_invocation_seconds_bucket" in metrics
    assert "serving" in run_cli(home, "endpoint", "logs", "lin").out

    ref2 = _approved(served, admin, make_model(tmp_path / "m2", factor=2.0))
    updated = run_cli(home, "endpoint", "update", "lin", "--model", ref2)
    assert updated.code == 0 and "lin is InService" in updated.out, updated.err
    assert json.loads(
        run_cli(home, "endpoint", "invoke", "lin", "--data", ROW).out
    ) == pytest.approx([28.0])
    old_pids = [i["pid"] for i in instances]
    _until(lambda: not any(_alive(pid) for pid in old_pids))  # the old fleet drained and exited

    deleted = run_cli(home, "endpoint", "delete", "lin")
    assert deleted.code == 0 and "deleted" in deleted.out
    assert run_cli(home, "endpoint", "list", "--json").out.strip() == "[]"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_killed_instances_restart_and_a_killed_daemon_restores_everything(
    served: Platform, admin: Principal, tmp_path: Path
) -> None:
    home = served.home
    ref = _approved(served, admin, make_model(tmp_path / "m"))
    ref = registry.promote(served, LEAD, ref, to="preprod").ref
    endpoints.create(served, admin, "lin", ref, env="preprod")
    ready = _until(
        lambda: (
            (e := endpoints.get(served, admin, "lin", env="preprod")).status == "InService" and e
        )
    )
    [instance] = ready.serving["instances"]
    os.kill(instance["pid"], signal.SIGKILL)

    def restarted() -> Any:
        [now] = endpoints.get(served, admin, "lin", env="preprod").serving["instances"]
        return now["state"] == "ready" and now["restarts"] == 1 and now

    again = _until(restarted)
    assert again["pid"] != instance["pid"]
    assert run_cli(home, "endpoint", "invoke", "lin", "--env", "preprod", "--data", ROW).code == 0

    daemon_pid = json.loads((home.run_dir / "daemon.json").read_text())["pid"]
    os.kill(daemon_pid, signal.SIGKILL)
    _until(lambda: not _alive(again["pid"]))  # its instances die with it: no orphan holds a port
    assert run_cli(home, "up", "--detach").code == 0
    _until(
        lambda: (
            (e := endpoints.get(served, admin, "lin", env="preprod")).status == "InService"
            and e.serving["instances"][0]["pid"] != again["pid"]  # not the row from before
            and e.serving["instances"][0]["state"] == "ready"
            and e
        )
    )
    answered = run_cli(home, "endpoint", "invoke", "lin", "--env", "preprod", "--data", ROW)
    assert json.loads(answered.out) == pytest.approx([14.0])


def test_failed_starts_are_reported_and_a_failed_update_keeps_the_old_fleet(
    served: Platform, admin: Principal, tmp_path: Path
) -> None:
    home = served.home
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "inference.py").write_text(
        "def model_fn(model_dir):\n    raise RuntimeError('weights missing')\n"
    )
    broken_ref = _approved(served, admin, broken, group="broken")
    failed = run_cli(home, "endpoint", "create", "bad", "--model", broken_ref)
    assert failed.code == 7
    assert "exited with status 3 while starting" in failed.err
    assert "RuntimeError: weights missing" in failed.err
    assert endpoints.get(served, admin, "bad").status == "Failed"

    silent = tmp_path / "silent"
    silent.mkdir()
    (silent / "lockgate-model.json").write_text(
        json.dumps(
            {"format": "command", "command": [sys.executable, "-c", "import time; time.sleep(60)"]}
        )
    )
    silent_ref = _approved(served, admin, silent, group="silent")
    timed_out = run_cli(
        home, "endpoint", "create", "quiet", "--model", silent_ref, "--startup-timeout", "1"
    )
    assert timed_out.code == 7 and "did not answer /ping within 1 s" in timed_out.err

    good_ref = _approved(served, admin, make_model(tmp_path / "m"))
    assert run_cli(home, "endpoint", "create", "lin", "--model", good_ref).code == 0
    kept = run_cli(home, "endpoint", "update", "lin", "--model", broken_ref)
    assert kept.code == 7 and "update to generation 2 failed; still serving" in kept.err
    answered = run_cli(home, "endpoint", "invoke", "lin", "--data", ROW)
    assert json.loads(answered.out) == pytest.approx([14.0])

    # A daemon restart serves again what served, not the version that never made it.
    daemon_pid = json.loads((home.run_dir / "daemon.json").read_text())["pid"]
    [before] = endpoints.get(served, admin, "lin").serving["instances"]
    os.kill(daemon_pid, signal.SIGKILL)
    _until(lambda: not _alive(daemon_pid))
    assert run_cli(home, "up", "--detach").code == 0
    restored = _until(
        lambda: (
            (e := endpoints.get(served, admin, "lin")).serving
            and e.serving["generation"] == 1
            and e.serving["instances"][0]["pid"] != before["pid"]
            and e.serving["instances"][0]["state"] == "ready"
            and e
        )
    )
    assert restored.status == "InService" and "still serving" in restored.reason
    again = run_cli(home, "endpoint", "invoke", "lin", "--data", ROW)
    assert json.loads(again.out) == pytest.approx([14.0])


def test_bring_your_own_container(served: Platform, admin: Principal, tmp_path: Path) -> None:
    folder = tmp_path / "byoc"
    folder.mkdir()
    (folder / "weights.txt").write_text("10\n")
    (folder / "serve.py").write_text(
        "import json, os\n"
        "from http.server import BaseHTTPRequestHandler, HTTPServer\n"
        "weight = float(open(os.path.join(os.environ['SM_MODEL_DIR'], 'weights.txt')).read())\n"
        "class H(BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200 if self.path == '/ping' else 404); self.end_headers()\n"
        "    def do_POST(self):\n"
        "        rows = json.loads(self.rfile.read(int(self.headers['Content-Length'])))\n"
        "        body = json.dumps([weight * sum(r) for r in rows]).encode()\n"
        "        self.send_response(200); self.send_header('Content-Type', 'application/json')\n"
        "        self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)\n"
        "HTTPServer(('127.0.0.1', int(os.environ['SAGEMAKER_BIND_TO_PORT'])), H).serve_forever()\n"
    )
    (folder / "lockgate-model.json").write_text(
        json.dumps(
            {"format": "command", "command": [sys.executable, "serve.py"], "startup_timeout_s": 20}
        )
    )
    ref = _approved(served, admin, folder, group="custom")
    assert run_cli(served.home, "endpoint", "create", "custom", "--model", ref).code == 0
    answered = run_cli(served.home, "endpoint", "invoke", "custom", "--data", "[[1, 2, 3]]")
    assert json.loads(answered.out) == [60.0]


def test_bad_requests_to_the_service(served: Platform, admin: Principal, tmp_path: Path) -> None:
    pending = registry.register(served, admin, make_model(tmp_path / "m"), "lin").ref
    with pytest.raises(ConflictError, match="only an approved version is served"):
        endpoints.create(served, admin, "lin", pending)
    with pytest.raises(NotFoundError):
        endpoints.create(served, admin, "lin", "lin/9")
    with pytest.raises(ValidationError, match="not a valid name"):
        endpoints.create(served, admin, "Bad_Name", pending)
    registry.set_status(served, LEAD, pending, registry.APPROVED)
    with pytest.raises(ValidationError, match="its quota is 20"):
        endpoints.create(served, admin, "big", pending, instances=21)
    with pytest.raises(ValidationError, match="between 1 and 64"):
        endpoints.create(served, admin, "huge", pending, instances=65)
    with pytest.raises(NotFoundError, match="no endpoint nope in dev"):
        endpoints.update(served, admin, "nope", instances=2)
    endpoints.create(served, admin, "lin", pending)
    with pytest.raises(ConflictError, match="already exists"):
        endpoints.create(served, admin, "lin", pending)
    with pytest.raises(ValidationError, match="nothing to change"):
        endpoints.update(served, admin, "lin")
    unknown = run_cli(served.home, "endpoint", "invoke", "nope", "--data", ROW)
    assert unknown.code == 5 and "lockgate endpoint list" in unknown.err
    assert endpoints.list_endpoints(served, admin, env="preprod") == []


def test_approved_in_dev_is_served_in_preprod_with_no_human_step(
    served: Platform, admin: Principal, tmp_path: Path
) -> None:
    home = served.home
    home.platform_file.write_text(
        home.platform_file.read_text()
        + """
[[bindings]]
principal = "service:deployer"
role = "lead-data-scientist"
environments = ["dev", "preprod"]

[rules.serve-in-preprod]
event = "ModelVersionApprovalChanged"
environments = ["dev"]
match = { group = "lin", to = "Approved" }
action = { kind = "deploy", endpoint = "lin", environment = "preprod", run_as = "service:deployer" }
"""
    )
    platform = Platform.open(home)
    infra.apply(platform, admin, confirm=lambda plan: True)
    _approved(platform, admin, make_model(tmp_path / "m"))  # the daemon's worker takes it from here

    served_now = _until(
        lambda: (
            (e := _get_or_none(platform, admin, "lin", "preprod")) is not None
            and e.status == "InService"
            and e
        ),
        timeout=60,
    )
    assert served_now.model_ref == "lin/1"
    promoted = registry.get(platform, admin, "lin/1", env="preprod")
    assert promoted.lineage["promoted_from"]["environment"] == "dev"
    answered = run_cli(home, "endpoint", "invoke", "lin", "--env", "preprod", "--data", ROW)
    assert json.loads(answered.out) == pytest.approx([14.0])
    [delivery] = json.loads(run_cli(home, "events", "deliveries", "--json").out)
    assert delivery["status"] == "succeeded" and delivery["result"]["environment"] == "preprod"


def _get_or_none(platform: Platform, admin: Principal, name: str, env: str) -> Any:
    try:
        return endpoints.get(platform, admin, name, env=env)
    except NotFoundError:
        return None


def test_the_daemon_runs_a_detached_batch_job(
    served: Platform, admin: Principal, tmp_path: Path
) -> None:
    import pandas as pd

    ref = _approved(served, admin, make_model(tmp_path / "m"))
    pd.DataFrame({"a": [1.0, 0.0], "b": [2.0, 0.0], "c": [3.0, 1.0]}).to_csv(
        tmp_path / "in.csv", index=False
    )
    out = tmp_path / "out"
    started = run_cli(
        served.home,
        "batch",
        "run",
        "-m",
        ref,
        "-i",
        str(tmp_path / "in.csv"),
        "-o",
        str(out),
        "--detach",
    )
    assert started.code == 0 and "the daemon runs it" in started.out
    [job] = json.loads(run_cli(served.home, "batch", "list", "--json").out)
    _until(
        lambda: (
            json.loads(run_cli(served.home, "batch", "show", job["id"], "--json").out)["status"]
            == "succeeded"
        ),
        timeout=60,
    )
    assert pd.read_csv(out / "part-00000.csv")["prediction"].round().tolist() == [14.0, 3.0]


def test_the_daemon_drives_a_detached_pipeline_run(
    served: Platform, admin: Principal, tmp_path: Path
) -> None:
    import shutil

    from lockgate.pipelines import service as pipelines

    project = tmp_path / "project"
    shutil.copytree(Path(__file__).parents[1] / "pipelines" / "projects" / "basic", project)
    pipelines.upsert(served, admin, f"{project}/pipe.py:basic")
    started = run_cli(served.home, "pipeline", "run", "basic", "--detach")
    assert started.code == 0 and "left to the daemon" in started.out, started.err
    [execution] = pipelines.list_executions(served, admin)
    done = _until(
        lambda: (e := pipelines.get_execution(served, admin, execution.id)).finished_at and e,
        timeout=90,
    )
    assert done.status == "succeeded"


def test_a_tampered_model_is_never_served(
    served: Platform, admin: Principal, tmp_path: Path
) -> None:
    ref = _approved(served, admin, make_model(tmp_path / "m"))
    store = served.env("dev").artifacts
    manifest = json.loads(store.get_bytes(registry.get(served, admin, ref).model_digest))
    joblib_entry = next(e for e in manifest if e["path"] == "model.joblib")
    Path(store._blob_path(joblib_entry["digest"])).write_bytes(b"not the model that was approved")
    failed = run_cli(served.home, "endpoint", "create", "lin", "--model", ref)
    assert failed.code == 7 and f"cannot use {ref}" in failed.err
    assert endpoints.get(served, admin, "lin").status == "Failed"


def test_the_daemon_runs_a_due_schedule(served: Platform, admin: Principal, tmp_path: Path) -> None:
    import shutil

    from lockgate.pipelines import schedules
    from lockgate.pipelines import service as pipelines
    from lockgate.store import schedules as schedule_rows

    project = tmp_path / "project"
    shutil.copytree(Path(__file__).parents[1] / "pipelines" / "projects" / "basic", project)
    pipelines.upsert(served, admin, f"{project}/pipe.py:basic")
    schedules.create(served, admin, "every-minute", "basic", "* * * * *", {"n": "3"})
    with served.env("dev").store.transaction() as session:  # made an hour ago: a slot is due
        schedule_rows.change(session, "every-minute", created_at="2000-01-01T00:00:00Z")
    [execution] = _until(lambda: pipelines.list_executions(served, admin), timeout=60)
    done = _until(
        lambda: (e := pipelines.get_execution(served, admin, execution.id)).finished_at and e,
        timeout=90,
    )
    assert done.status == "succeeded" and done.parameters["n"] == 3
    [schedule] = schedules.list_schedules(served, admin)
    assert schedule.last_execution == execution.id
