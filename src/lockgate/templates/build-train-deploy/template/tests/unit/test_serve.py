"""The model's own server (pipeline/serve/serve.py): request parsing, and a real round trip."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from serve import serve

FEATURES = ["length", "diameter", "sex_M"]


class SumModel:
    """Stands in for the estimator: predicts the sum of each row."""

    features = FEATURES
    n_features = len(FEATURES)

    def predict(self, rows: list[list[float]]) -> list[float]:
        return [sum(row) for row in rows]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[[0.5, 0.25, 1], [0.25, 0.5, 0]]", serve.JSON),
        (b'{"instances": [[0.5, 0.25, 1], [0.25, 0.5, 0]]}', serve.JSON),
        (
            b'{"inputs": [{"length": 0.5, "diameter": 0.25, "sex_M": 1},'
            b' {"sex_M": 0, "diameter": 0.5, "length": 0.25}]}',
            serve.JSON,
        ),
        (b"0.5,0.25,1\n0.25,0.5,0\n", serve.CSV),
        (b"length,diameter,sex_M\n0.5,0.25,1\n0.25,0.5,0\n", serve.CSV),
    ],
)
def test_parse_reads_rows_in_the_training_column_order(body: bytes, content_type: str) -> None:
    assert serve.parse(body, content_type, FEATURES) == [[0.5, 0.25, 1.0], [0.25, 0.5, 0.0]]


def test_parse_takes_one_row_on_its_own() -> None:
    assert serve.parse(b"[0.5, 0.25, 1]", serve.JSON, FEATURES) == [[0.5, 0.25, 1.0]]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b"", serve.JSON, 400, "empty"),
        (b"[[0.5, 0.25]]", serve.JSON, 400, "expects 3"),
        (b"[[0.5, NaN, 1]]", serve.JSON, 400, "malformed JSON"),
        (b'[[0.5, "x", 1]]', serve.JSON, 400, "not a number"),
        (b"[[0.5, true, 1]]", serve.JSON, 400, "not a number"),
        (b'{"rows": [[1, 2, 3]]}', serve.JSON, 400, "instances"),
        (b'[{"length": 0.5, "sex_M": 1}]', serve.JSON, 400, "missing diameter"),
        (b"0.5,abc,1\n", serve.CSV, 400, "not a number"),
        (b"0.5,0.25,1", "text/plain", 415, "not supported"),
    ],
)
def test_parse_refuses_what_the_model_must_not_see(
    body: bytes, content_type: str, status: int, words: str
) -> None:
    with pytest.raises(serve.BadRequest) as caught:
        serve.parse(body, content_type, FEATURES)
    assert caught.value.status == status
    assert words in caught.value.message


def test_media_type_ignores_parameters_and_wildcards() -> None:
    assert serve.media_type("text/csv; charset=utf-8") == serve.CSV
    assert serve.media_type("*/*") == serve.JSON
    assert serve.media_type(None) == serve.JSON


def test_encode_answers_as_the_built_in_server() -> None:
    assert serve.encode([1.5, 2.0], serve.JSON) == (b"[1.5, 2.0]", serve.JSON)
    assert serve.encode([1.5, 2.0], serve.CSV) == (b"1.5\n2.0\n", serve.CSV)


@pytest.fixture
def server() -> Iterator[Any]:
    running = serve.make_server(SumModel(), 0)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


def request(server: Any, method: str, path: str, body: bytes = b"", **headers: str) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def test_the_server_answers_ping_and_invocations(server: Any) -> None:
    assert request(server, "GET", "/ping")[0] == 200
    status, content_type, body = request(
        server, "POST", "/invocations", b"[[1, 2, 3]]", **{"Content-Type": serve.JSON}
    )
    assert (status, content_type, json.loads(body)) == (200, serve.JSON, [6.0])
    status, content_type, body = request(
        server,
        "POST",
        "/invocations",
        b"1,2,3\n4,5,6\n",
        **{"Content-Type": serve.CSV, "Accept": serve.CSV},
    )
    assert (status, content_type, body) == (200, serve.CSV, b"6.0\n15.0\n")


def test_the_server_answers_a_bad_request_with_a_json_error(server: Any) -> None:
    status, _, body = request(
        server, "POST", "/invocations", b"[[1, 2]]", **{"Content-Type": serve.JSON}
    )
    assert status == 400
    assert "expects 3" in json.loads(body)["error"]
    assert request(server, "GET", "/nowhere")[0] == 404
