"""Canary and linear rollouts under steady load: a good one finishes, a bad one rolls back, and
not one request fails either way."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import ROW, _approved, _gateway, make_model
from lockgate.auth.principal import Principal
from lockgate.errors import ValidationError
from lockgate.platform import Platform
from lockgate.serving import service as endpoints
from lockgate.serving.rollout import Alarms, parse_strategy
from support import run_cli

pytestmark = pytest.mark.slow


class Load:
    """Clients sending one row at a time through the gateway, recording every answer."""

    def __init__(self, url: str, clients: int = 3) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.answers: list[tuple[int, float | str]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _client(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        while not self.stop.is_set():
            try:
                conn.request(
                    "POST",
                    "/endpoints/lin/invocations",
                    body=ROW,
                    headers={"Content-Type": "application/json"},
                )
                response = conn.getresponse()
                body = response.read()
                value: float | str = (
                    json.loads(body)[0] if response.status == 200 else body.decode()
                )
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                status, value = 0, repr(exc)
            with self.lock:
                self.answers.append((status, value))
        conn.close()

    def finish(self) -> list[tuple[int, float | str]]:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        return self.answers


def _broken_model(folder: Path, body: str) -> Path:
    folder.mkdir()
    (folder / "inference.py").write_text(
        "import time\n"
        "def model_fn(model_dir):\n    return None\n"
        f"def predict_fn(data, model):\n{body}\n"
    )
    return folder


def test_a_canary_that_stays_healthy_takes_all_the_traffic(
    served: Platform, admin: Principal, tmp_path: Path
) -> None:
    home = served.home
    first = _approved(served, admin, make_model(tmp_path / "m1"))
    assert (
        run_cli(
            home, "endpoint", "create", "lin", "--model", first, "--instances", "2", "--public"
        ).code
        == 0
    )
    second = _approved(served, admin, make_model(tmp_path / "m2", factor=2.0))
    load = Load(_gateway(served))
    updated = run_cli(
        home,
        "endpoint",
        "update",
        "lin",
        "--model",
        second,
        "--strategy",
        "canary:30:3",
        timeout=120,
    )
    answers = load.finish()
    assert updated.code == 0, updated.err
    assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:5]
    values = [round(float(v)) for _, v in answers]
    assert 14 in values and 28 in values  # both fleets answered during the bake
    assert values[-1] == 28  # and the new one took everything at the end
    found = endpoints.get(served, admin, "lin")
    assert found.status == "InService" and found.model_ref == second and found.reason is None


def test_a_failing_canary_is_rolled_back_and_no_request_fails(
    served: Platform, admin: Principal, tmp_path: Path
) -> None:
    home = served.home
    first = _approved(served, admin, make_model(tmp_path / "m1"))
    assert run_cli(home, "endpoint", "create", "lin", "--model", first, "--public").code == 0
    bad = _approved(
        served,
        admin,
        _broken_model(tmp_path / "bad", "    raise RuntimeError('bad weights')"),
        group="bad",
    )
    load = Load(_gateway(served))
    updated = run_cli(
        home, "endpoint", "update", "lin", "--model", bad, "--strategy", "canary:20:30", timeout=120
    )
    answers = load.finish()
    assert updated.code == 7 and "rolled back: error rate" in updated.err
    assert all(status == 200 and round(float(v)) == 14 for status, v in answers), answers[:5]
    found = endpoints.get(served, admin, "lin")
    assert found.status == "InService" and found.serving["model_ref"] == first
    assert "still serving lin/1" in found.reason


def test_a_slow_linear_rollout_is_rolled_back_on_p99(
    served: Platform, admin: Principal, tmp_path: Path
) -> None:
    home = served.home
    first = _approved(served, admin, make_model(tmp_path / "m1"))
    assert run_cli(home, "endpoint", "create", "lin", "--model", first, "--public").code == 0
    slow = _approved(
        served,
        admin,
        _broken_model(tmp_path / "slow", "    time.sleep(0.15)\n    return [0.0]"),
        group="slow",
    )
    load = Load(_gateway(served))
    updated = run_cli(
        home,
        "endpoint",
        "update",
        "lin",
        "--model",
        slow,
        "--strategy",
        "linear:50:30",
        "--max-p99-ms",
        "100",
        timeout=120,
    )
    answers = load.finish()
    assert updated.code == 7 and "rolled back: p99 latency" in updated.err, updated.err
    assert all(status == 200 for status, _ in answers)
    assert endpoints.get(served, admin, "lin").serving["model_ref"] == first


@pytest.mark.parametrize(
    "text", ["canary", "canary:0:10", "canary:100:1", "linear:10", "blue-green", "canary:10:9999"]
)
def test_bad_strategies_are_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="is not valid"):
        parse_strategy(text)
    with pytest.raises(ValidationError, match="between 0 and 1"):
        Alarms(max_error_rate=2).check()
