"""A tiny causal language model made here (a word-level tokenizer trained in-process and a
one-layer GPT-2), so the text-generation tests download nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import tiny_lm


@pytest.fixture(scope="session")
def lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers", reason="needs lockgate[llm]")
    return tiny_lm(tmp_path_factory.mktemp("lm") / "model")
