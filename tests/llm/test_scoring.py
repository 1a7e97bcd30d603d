"""Perplexity and greedy answers on the tiny in-process model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lockgate.errors import ValidationError


def _load(lm_dir: Path) -> tuple[object, object]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (
        AutoModelForCausalLM.from_pretrained(lm_dir, local_files_only=True),
        AutoTokenizer.from_pretrained(lm_dir, local_files_only=True),
    )


def test_perplexity_is_that_of_the_mean_loss(lm_dir: Path) -> None:
    import torch

    from lockgate.llm.scoring import perplexity

    model, tokenizer = _load(lm_dir)
    texts = ["the capital of france is paris", "water boils at one hundred degrees"]
    score = perplexity(model, tokenizer, texts)
    # An untrained model with a vocabulary of V words is about as good as guessing: near V.
    vocab = tokenizer.vocab_size  # type: ignore[attr-defined]
    assert 1 < score < 10 * vocab
    with torch.no_grad():  # the same number computed by hand, token-weighted
        nll, n = 0.0, 0
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")["input_ids"]  # type: ignore[operator]
            nll += float(model(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)  # type: ignore[operator]
            n += ids.shape[1] - 1
    assert score == pytest.approx(math.exp(nll / n))
    with pytest.raises(ValidationError):
        perplexity(model, tokenizer, [])


def test_answers_are_the_continuations(lm_dir: Path) -> None:
    from lockgate.llm.scoring import answer

    model, tokenizer = _load(lm_dir)
    (one,) = answer(model, tokenizer, ["the capital of"], max_new_tokens=2)
    assert isinstance(one, str) and not one.startswith("the capital of")
