"""Scores that run the model (needs ``lockgate[llm]``): perplexity on held-out texts, and
greedy answers to prompts for the factual-knowledge score."""

from __future__ import annotations

import math
from typing import Any


def perplexity(model: Any, tokenizer: Any, texts: list[str], *, max_tokens: int = 512) -> float:
    """exp(mean negative log-likelihood per predicted token) over ``texts``."""
    import torch

    if not texts:
        from lockgate.errors import ValidationError

        raise ValidationError("perplexity needs at least one text.")
    device = next(model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")["input_ids"][:, :max_tokens].to(device)
            if ids.shape[1] < 2:
                continue  # nothing to predict in a one-token text
            loss = model(input_ids=ids, labels=ids).loss
            predicted = ids.shape[1] - 1
            total += float(loss) * predicted
            count += predicted
    if count == 0:
        from lockgate.errors import ValidationError

        raise ValidationError("the texts are too short to score (each needs two tokens).")
    return math.exp(total / count)


def answer(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int = 16,
    max_input_tokens: int | None = None,
) -> list[str]:
    """Greedy completions of ``prompts`` (the continuation only); a prompt longer than
    ``max_input_tokens`` keeps its end (the question's tail and the answer cue)."""
    import torch

    if max_input_tokens is not None and max_input_tokens < 1:
        from lockgate.errors import ValidationError

        raise ValidationError(
            f"no room for a prompt: {max_new_tokens} new tokens fill the model's context.",
            hint="Ask for fewer new tokens (max_new_tokens).",
        )
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    model.eval()
    with torch.no_grad():
        for text in prompts:
            encoded = tokenizer(text, return_tensors="pt")
            if max_input_tokens is not None and encoded["input_ids"].shape[1] > max_input_tokens:
                encoded = {k: v[:, -max_input_tokens:] for k, v in encoded.items()}
            encoded = {k: v.to(device) for k, v in encoded.items()}
            generated = model.generate(
                **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad
            )
            out.append(
                tokenizer.decode(
                    generated[0][encoded["input_ids"].shape[1] :], skip_special_tokens=True
                )
            )
    return out
