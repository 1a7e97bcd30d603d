"""Decoding requests and encoding answers: every shape accepted, every bad input refused clearly."""

from __future__ import annotations

import pytest

from lockgate.serving.codec import CSV, JSON, CodecError, decode, encode, media_type

F = ["a", "b", "c"]


@pytest.mark.parametrize(
    ("body", "content_type", "rows"),
    [
        (b"[[1, 2, 3], [4, 5, 6]]", JSON, [[1, 2, 3], [4, 5, 6]]),
        (b"[1, 2, 3]", JSON, [[1, 2, 3]]),
        (b'{"instances": [[1, 2, 3]]}', JSON, [[1, 2, 3]]),
        (b'{"inputs": [{"c": 3, "a": 1, "b": 2}]}', JSON, [[1, 2, 3]]),
        (b"1,2,3\n4,5,6\n", CSV, [[1, 2, 3], [4, 5, 6]]),
        (b"a,b,c\n1,2,3\n", CSV, [[1, 2, 3]]),
    ],
)
def test_accepted_shapes(body: bytes, content_type: str, rows: list[list[float]]) -> None:
    assert decode(body, content_type, F, 3) == rows


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"", JSON, 400, "the request body is empty"),
        (b"[[1, 2", JSON, 400, "malformed JSON"),
        (b"[[1, NaN, 3]]", JSON, 400, "NaN is not a number JSON allows"),
        (b"[[1, Infinity, 3]]", JSON, 400, "Infinity is not a number JSON allows"),
        (b"[[1, 2]]", JSON, 400, "row 0 has 2 values; the model expects 3 features (a, b, c)"),
        (b'[[1, "x", 3]]', JSON, 400, "row 0, column 1: 'x' is not a number"),
        (b"[[1, true, 3]]", JSON, 400, "row 0, column 1: True is not a number"),
        (b'{"rows": []}', JSON, 400, 'under "instances" or "inputs"'),
        (b"[]", JSON, 400, "non-empty list"),
        (b'[{"a": 1, "b": 2, "z": 3}]', JSON, 400, "row 0: missing c; unknown z"),
        (b"1,2,x\n", CSV, 400, "CSV line 1 has a value that is not a number"),
        (b"1,2,nan\n", CSV, 400, "nan is not a finite number"),
        (b"\xff\xfe", CSV, 400, "not UTF-8"),
        (b"1,2,3", "application/x-npy", 415, "'application/x-npy' is not supported"),
    ],
)
def test_refusals(body: bytes, content_type: str, status: int, message: str) -> None:
    with pytest.raises(CodecError) as caught:
        decode(body, content_type, F, 3)
    assert caught.value.status == status and message in caught.value.message


def test_rows_as_objects_need_feature_names() -> None:
    with pytest.raises(CodecError, match="no feature names"):
        decode(b'[{"a": 1}]', JSON, None, None)
    assert decode(b"[[1, 2]]", JSON, None, None) == [[1, 2]]  # width unknown: any width


def test_encode_and_media_types() -> None:
    assert encode([1.5, 2.0], JSON) == (b"[1.5, 2.0]", JSON)
    assert encode([1.5, 2.0], CSV) == (b"1.5\n2.0\n", CSV)
    assert encode([[1, 2]], CSV) == (b"1,2\n", CSV)
    with pytest.raises(CodecError) as caught:
        encode([1], "application/xml")
    assert caught.value.status == 406
    assert media_type("application/json; charset=utf-8") == JSON
    assert media_type("*/*") == JSON and media_type(None, CSV) == CSV
    assert media_type("text/csv, application/json") == CSV
