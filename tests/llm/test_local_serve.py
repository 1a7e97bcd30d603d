"""Serving a package for a moment on loopback (the template's endpoint test uses it)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from lockgate.errors import ValidationError
from lockgate.serving import local


def test_a_text_generation_package_answers_and_stops(lm_dir: Path) -> None:
    with local.serve(lm_dir) as url:
        assert url.startswith("http://127.0.0.1:")
        answer = httpx.post(
            f"{url}/invocations",
            json={"inputs": "the capital of", "parameters": {"max_new_tokens": 2}},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert isinstance(answer.json()[0]["generated_text"], str)
        over = httpx.post(
            f"{url}/invocations",
            json={"inputs": "the capital of", "parameters": {"max_new_tokens": 9}},
            timeout=60,
        )
        assert over.status_code == 400 and "max_new_tokens" in over.text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/ping", timeout=2)


def test_a_package_that_cannot_load_says_why(tmp_path: Path) -> None:
    (tmp_path / "inference.py").write_text("raise RuntimeError('no weights here')\n")
    (tmp_path / "lockgate-model.json").write_text(json.dumps({"format": "python"}))
    with (
        pytest.raises(ValidationError, match=r"exited with status 3:\n(.|\n)*no weights here"),
        local.serve(tmp_path),
    ):
        pytest.fail("the block must not run")
