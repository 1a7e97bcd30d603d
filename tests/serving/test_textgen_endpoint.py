"""A text-generation model served on an endpoint by the daemon, asked through the gateway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import _approved  # type: ignore[import-not-found]
from lockgate.auth.principal import Principal
from lockgate.platform import Platform
from support import run_cli, tiny_lm


def test_a_language_model_answers_a_generation_request(
    served: Platform, admin: Principal, tmp_path: Path
) -> None:
    pytest.importorskip("transformers", reason="needs lockgate[llm]")
    ref = _approved(served, admin, tiny_lm(tmp_path / "lm"), group="lm")
    created = run_cli(served.home, "endpoint", "create", "chat", "--model", ref, timeout=120)
    assert created.code == 0 and "chat is InService" in created.out, created.err + created.out
    asked = run_cli(
        served.home,
        "endpoint",
        "invoke",
        "chat",
        "--data",
        json.dumps({"inputs": "the capital of", "parameters": {"max_new_tokens": 3}}),
    )
    assert asked.code == 0, asked.err
    (answer,) = json.loads(asked.out)
    assert isinstance(answer["generated_text"], str)
    over = run_cli(
        served.home,
        "endpoint",
        "invoke",
        "chat",
        "--data",
        json.dumps({"inputs": "x", "parameters": {"max_new_tokens": 99}}),
    )
    assert over.code != 0 and "max_new_tokens must be a whole number from 1 to 8" in over.err
