"""The inference server as a real process on a loopback port: formats, answers, limits, metrics,
data capture and a model that fails to load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import free_port_block
from lockgate.errors import ValidationError
from lockgate.serving.instance import EXIT_LOAD_FAILED
from lockgate.serving.package import read_manifest

ROW = [1.0, 2.0, 3.0]  # a + 2b + 3c = 14


class Server:
    def __init__(self, model_dir: Path, **env: str) -> None:
        self.port = free_port_block(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lockgate.serving.instance"],
            env={
                **os.environ,
                "SAGEMAKER_BIND_TO_PORT": str(self.port),
                "SM_MODEL_DIR": str(model_dir),
                "LOCKGATE_ENDPOINT": "test",
                **env,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"exited {self.process.returncode}: {self.process.stdout.read()}"
                )
            try:
                if httpx.get(f"{self.url}/ping", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("not ready")

    def post(
        self, body: bytes, content_type: str = "application/json", **headers: str
    ) -> httpx.Response:
        return httpx.post(
            f"{self.url}/invocations",
            content=body,
            headers={"Content-Type": content_type, **headers},
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.process.stdout.close()


@pytest.fixture
def server(model_dir: Path) -> Iterator[Server]:
    s = Server(model_dir)
    s.wait_ready()
    yield s
    s.stop()


def test_json_and_csv_in_and_out(server: Server) -> None:
    answer = server.post(json.dumps([ROW, [0, 0, 1]]).encode())
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == pytest.approx([14.0, 3.0])
    by_name = server.post(json.dumps({"instances": [{"c": 3, "b": 2, "a": 1}]}).encode())
    assert by_name.json() == pytest.approx([14.0])
    csv = server.post(b"1,2,3\n0,0,1\n", "text/csv", Accept="text/csv")
    assert csv.headers["content-type"] == "text/csv"
    assert [float(v) for v in csv.text.split()] == pytest.approx([14.0, 3.0])


def test_bad_requests_get_4xx_and_the_instance_stays_up(server: Server) -> None:
    cases = [
        (server.post(b"[[1, 2"), 400, "malformed JSON"),
        (server.post(b"[[1, 2]]"), 400, "expects 3 features (a, b, c)"),
        (server.post(b"[[1, NaN, 3]]"), 400, "NaN"),
        (server.post(b"1,2,3", "application/xml"), 415, "not supported"),
        (server.post(json.dumps([ROW]).encode(), Accept="application/xml"), 406, "cannot answer"),
        (server.post(b"[" + b"1.0," * 2_000_000 + b"1.0]"), 413, "limit"),
        (httpx.get(f"{server.url}/nope"), 404, "not found"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, response.text
        assert message in response.json()["error"]
    assert server.post(json.dumps([ROW]).encode()).json() == pytest.approx([14.0])
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'lockgate_invocations_total{endpoint="test",status="400"} 3.0' in metrics
    assert 'lockgate_invocations_total{endpoint="test",status="200"} 1.0' in metrics
    assert 'lockgate_invocation_errors_total{endpoint="test",kind="client"} 6.0' in metrics
    assert 'lockgate_invocation_seconds_count{endpoint="test"} 7.0' in metrics


def test_data_capture_writes_json_lines_to_the_artifact_store(
    model_dir: Path, tmp_path: Path
) -> None:
    store = tmp_path / "artifacts"
    s = Server(model_dir, LOCKGATE_CAPTURE_SAMPLE="1", LOCKGATE_CAPTURE_URL=f"file://{store}")
    s.wait_ready()
    for _ in range(3):
        s.post(json.dumps([ROW]).encode())
    s.post(b"[[1]]")
    s.stop()  # a graceful stop flushes what is buffered
    records = [
        json.loads(line)
        for path in sorted((store / "capture" / "test").rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert [r["status"] for r in records] == [200, 200, 200, 400]
    assert records[0]["request"] == {"content_type": "application/json", "data": json.dumps([ROW])}
    assert json.loads(records[0]["response"]["data"]) == pytest.approx([14.0])


def test_the_inference_script_convention(model_dir: Path) -> None:
    (model_dir / "lockgate-model.json").unlink()
    (model_dir / "inference.py").write_text(
        "import json\n"
        "def input_fn(body, content_type):\n"
        "    doc = json.loads(body)\n"
        "    if 'rows' not in doc:\n"
        "        raise ValueError('send {\"rows\": ...}')\n"
        "    return doc['rows']\n"
        "def predict_fn(data, model):\n"
        "    return [sum(row) for row in data]\n"
        "def output_fn(prediction, accept):\n"
        "    return json.dumps({'sums': prediction}), 'application/json'\n"
    )
    assert read_manifest(model_dir).format == "python"
    s = Server(model_dir)
    s.wait_ready()
    try:
        assert s.post(b'{"rows": [[1, 2, 3]]}').json() == {"sums": [6]}
        refused = s.post(b'{"other": 1}')
        assert (
            refused.status_code == 400 and "input_fn refused the request" in refused.json()["error"]
        )
    finally:
        s.stop()


def test_a_model_that_cannot_load_exits_with_the_reason(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "inference.py").write_text(
        "def model_fn(model_dir):\n    raise RuntimeError('weights missing')\n"
    )
    s = Server(folder)
    assert s.process.wait(timeout=30) == EXIT_LOAD_FAILED
    output = s.process.stdout.read()
    s.process.stdout.close()
    assert "RuntimeError: weights missing" in output


def test_manifest_errors(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(ValidationError, match="not a model package"):
        read_manifest(folder)
    (folder / "lockgate-model.json").write_text('{"format": "onnx"}')
    with pytest.raises(ValidationError, match="unknown model format 'onnx'"):
        read_manifest(folder)
    (folder / "lockgate-model.json").write_text('{"format": "command"}')
    with pytest.raises(ValidationError, match="needs a command"):
        read_manifest(folder)
    (folder / "lockgate-model.json").write_text('{"format": "sklearn", "file": "gone.joblib"}')
    with pytest.raises(ValidationError, match=r"'gone\.joblib' is missing"):
        read_manifest(folder)


def test_rows_reach_the_model_as_arrays_only_when_that_is_enough(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from conftest import FEATURES, make_model
    from lockgate.pipelines.types import Model
    from lockgate.serving import formats

    plain = formats.load(make_model(tmp_path / "plain"))
    assert plain.rows.as_frame is False  # a plain estimator: an array, same predictions
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(40, 3)), columns=FEATURES)
    by_name = make_pipeline(
        ColumnTransformer([("scaled", StandardScaler(), ["a", "c"])]), LinearRegression()
    ).fit(frame, frame["a"] + frame["c"])
    folder = tmp_path / "by-name"
    folder.mkdir()
    Model(folder).save(by_name)
    selecting = formats.load(folder)
    assert selecting.rows.as_frame is True  # it selects columns by name: a DataFrame
    body, _ = selecting.invoke(
        b'[{"a": 1, "b": 5, "c": 2}]', "application/json", "application/json"
    )
    assert json.loads(body) == pytest.approx([3.0])
    body, _ = plain.invoke(json.dumps([ROW]).encode(), "application/json", "application/json")
    assert json.loads(body) == pytest.approx([14.0])
