"""The text-generation format: the request shape, the answers, and the limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockgate.serving import formats
from lockgate.serving.codec import CodecError


@pytest.fixture(scope="module")
def predictor(lm_dir: Path) -> formats.Predictor:
    return formats.load(lm_dir)


def _ask(
    predictor: formats.Predictor, doc: object, content_type: str = "application/json"
) -> list[dict[str, str]]:
    body, ctype = predictor.invoke(json.dumps(doc).encode(), content_type, "application/json")
    assert ctype == "application/json"
    return list(json.loads(body))


def test_a_prompt_gets_generated_text(predictor: formats.Predictor) -> None:
    (answer,) = _ask(
        predictor, {"inputs": "the capital of france is", "parameters": {"max_new_tokens": 3}}
    )
    assert isinstance(answer["generated_text"], str)
    full = _ask(
        predictor,
        {"inputs": "the capital of", "parameters": {"max_new_tokens": 2, "return_full_text": True}},
    )
    assert full[0]["generated_text"].startswith("the capital of")
    seeded = {"inputs": "water", "parameters": {"do_sample": True, "temperature": 0.8, "seed": 7}}
    assert _ask(predictor, seeded) == _ask(predictor, seeded)  # a seed makes sampling repeatable
    assert (
        predictor.predict(["the capital of italy is"])[0]
        == _ask(predictor, {"inputs": "the capital of italy is"})[0]["generated_text"]
    )


@pytest.mark.parametrize(
    ("doc", "status", "match"),
    [
        ({"inputs": "x", "parameters": {"max_new_tokens": 9}}, 400, "from 1 to 8"),
        ({"inputs": " ".join(["water"] * 20)}, 400, "at most 16"),
        ({"inputs": ""}, 400, "non-empty prompt"),
        ({"prompt": "x"}, 400, "non-empty prompt"),
        ({"inputs": "x", "parameters": {"beams": 4}}, 400, "unknown parameters"),
        ({"inputs": "x", "parameters": {"temperature": -1}}, 400, "temperature"),
        ({"inputs": "x", "parameters": {"top_p": 0}}, 400, "top_p"),
    ],
)
def test_requests_over_the_limits_are_refused(
    predictor: formats.Predictor, doc: object, status: int, match: str
) -> None:
    with pytest.raises(CodecError, match=match) as caught:
        _ask(predictor, doc)
    assert caught.value.status == status


def test_only_json_is_taken(predictor: formats.Predictor) -> None:
    with pytest.raises(CodecError) as caught:
        predictor.invoke(b"hello", "text/csv", "application/json")
    assert caught.value.status == 415


def test_a_package_without_a_model_is_refused(tmp_path: Path) -> None:
    from lockgate.errors import ValidationError
    from lockgate.serving.package import read_manifest

    (tmp_path / "lockgate-model.json").write_text('{"format": "text-generation"}')
    with pytest.raises(ValidationError, match="causal LM saved with save_pretrained"):
        read_manifest(tmp_path)


def test_the_rest_of_lockgate_never_imports_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, lockgate.cli.main, lockgate.serving.formats, lockgate.serving.instance, "
        "lockgate.server.daemon; print('torch' in sys.modules or 'transformers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
