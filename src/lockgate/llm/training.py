"""Building, training, loading and packaging causal language models (needs ``lockgate[llm]``).

The same code runs on a CPU and on a GPU (``device()`` picks CUDA when there is one), with a
small GPT-2 built from a configuration and a byte-level BPE tokenizer trained in-process, or with
a local pretrained model (any Hugging Face causal LM saved with ``save_pretrained``). Nothing is
ever downloaded: pretrained folders are read with ``HF_HUB_OFFLINE=1`` and ``local_files_only``,
and never run code from the folder (``trust_remote_code`` stays off).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lockgate.errors import ValidationError
from lockgate.llm.candidates import Architecture, TokenizerSpec, TrainingSpec

#: The special token a trained tokenizer ends texts with (and pads with).
END = "<|endoftext|>"
#: Largest generation a packaged model allows, and its share of the context at most.
MAX_NEW_TOKENS = 64


def offline() -> None:
    """Make sure the Hugging Face libraries never reach the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def device() -> str:
    """``cuda`` when a GPU is present, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def share_cpus(parallel: int) -> int:
    """Give this process its share of the CPUs when ``parallel`` steps train at once (torch
    would otherwise start a thread per core in each, and they would fight); returns it."""
    import torch

    cores = os.cpu_count() or 1
    threads = max(1, cores // max(1, min(parallel, cores)))
    torch.set_num_threads(threads)
    return threads


def train_tokenizer(texts: list[str], spec: TokenizerSpec) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (any text encodes; nothing is unknown)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if not texts:
        raise ValidationError("a tokenizer needs training texts; the training set is empty.")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        min_frequency=spec.min_frequency,
        special_tokens=[END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer, eos_token=END, bos_token=END, pad_token=END, unk_token=END
    )


def build(architecture: Architecture, tokenizer: Any, *, seed: int = 0) -> Any:
    """A GPT-2 of ``architecture`` for ``tokenizer``'s vocabulary, initialised at random from
    ``seed`` (the same seed gives the same weights)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=architecture.n_positions,
        n_embd=architecture.n_embd,
        n_layer=architecture.n_layer,
        n_head=architecture.n_head,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def load_pretrained(path: Path, name: str) -> tuple[Any, Any]:
    """The causal LM and tokenizer ``save_pretrained`` wrote in ``path``, read offline; a folder
    that is missing, is not such a model or is not a causal LM is an error naming candidate
    ``name``."""
    offline()
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    what = f"candidate {name!r}: {path}"
    if not path.is_dir():
        raise ValidationError(
            f"{what} does not exist or is not a folder.",
            hint="Give `pretrained` the folder a model was saved to with save_pretrained.",
        )
    if not (path / "config.json").is_file():
        raise ValidationError(
            f"{what} has no config.json: it is not a model saved with save_pretrained.",
            hint="Save it with model.save_pretrained(FOLDER) and tokenizer.save_pretrained(FOLDER).",
        )
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except (ValueError, OSError, KeyError) as exc:
        kind = _model_type(path)
        raise ValidationError(
            f"{what} is not a causal language model ({kind}): {' '.join(str(exc).split())[:300]}",
            hint="Candidates are causal LMs (GPT-2, Llama, Qwen, …) that AutoModelForCausalLM loads.",
        ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (ValueError, OSError) as exc:
        raise ValidationError(
            f"{what} has no usable tokenizer: {' '.join(str(exc).split())[:300]}",
            hint="Save the tokenizer into the same folder with tokenizer.save_pretrained(FOLDER).",
        ) from None
    if len(tokenizer) < 2 or not tokenizer("The probe.")["input_ids"]:
        # Without tokenizer files, transformers makes an empty tokenizer rather than failing.
        raise ValidationError(
            f"{what} has no usable tokenizer (it encodes nothing).",
            hint="Save the tokenizer into the same folder with tokenizer.save_pretrained(FOLDER).",
        )
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    del config
    return model, tokenizer


def _model_type(path: Path) -> str:
    import json

    try:
        return f"model_type {json.loads((path / 'config.json').read_text()).get('model_type')!r}"
    except (OSError, ValueError, AttributeError):
        return "unreadable config.json"


def context_length(model: Any) -> int:
    config = model.config
    found = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    return int(found or 1024)


def train(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    spec: TrainingSpec,
    *,
    seed: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train ``model`` on ``texts`` (each ended with the end token) as a causal LM, on the
    model's device; returns what happened (steps, time, loss)."""
    import torch

    if not texts:
        raise ValidationError("the training set is empty.")
    if tokenizer.eos_token is None or tokenizer.pad_token_id is None:
        raise ValidationError("the tokenizer needs an end-of-text token to train with.")
    torch.manual_seed(seed)
    where = next(model.parameters()).device
    limit = min(spec.max_length or context_length(model), context_length(model))
    encoded = [
        tokenizer(text + tokenizer.eos_token, truncation=True, max_length=limit)["input_ids"]
        for text in texts
    ]
    per_epoch = math.ceil(len(encoded) / spec.batch_size)
    total = per_epoch * spec.epochs
    if spec.max_steps is not None:
        total = min(total, spec.max_steps)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 1.0 - 0.9 * step / max(total, 1)
    )
    shuffle = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    tokens = 0
    step = 0
    model.train()
    start = time.perf_counter()
    while step < total:
        order = torch.randperm(len(encoded), generator=shuffle).tolist()
        for first in range(0, len(order), spec.batch_size):
            if step >= total:
                break
            batch = [encoded[i] for i in order[first : first + spec.batch_size]]
            ids, mask, labels = _pad(batch, tokenizer.pad_token_id)
            loss = model(
                input_ids=ids.to(where), attention_mask=mask.to(where), labels=labels.to(where)
            ).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad(set_to_none=True)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise ValidationError(
                    f"training diverged at step {step + 1} (loss {value}).",
                    hint="Lower the learning rate.",
                )
            losses.append(value)
            tokens += int(mask.sum())
            step += 1
            if step == 1 or step % max(1, total // 10) == 0 or step == total:
                log(f"step {step}/{total} loss {value:.4f}")
    seconds = time.perf_counter() - start
    model.eval()
    tail = losses[-10:]
    return {
        "steps": step,
        "epochs": round(step / per_epoch, 3),
        "seconds": round(seconds, 3),
        "steps_per_s": round(step / seconds, 3) if seconds else None,
        "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
        "first_loss": round(losses[0], 4),
        "final_loss": round(sum(tail) / len(tail), 4),
        "device": str(where),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _pad(batch: list[list[int]], pad: int) -> tuple[Any, Any, Any]:
    """Right-padded ids, their attention mask, and labels that ignore the padding."""
    import torch

    width = max(len(ids) for ids in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


def limits(model: Any) -> dict[str, int]:
    """Request limits that fit the model's context: prompt plus new tokens never exceed it."""
    context = context_length(model)
    new = min(MAX_NEW_TOKENS, context // 4)
    return {"max_input_tokens": context - new, "max_new_tokens": new}


def save(model: Any, tokenizer: Any, folder: Path) -> Path:
    """``folder`` as a text-generation model package: weights, config, tokenizer, manifest."""
    from lockgate.serving.package import Manifest, write_manifest

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_manifest(folder, Manifest(format="text-generation", limits=limits(model)))
    return folder


def load(folder: Path) -> tuple[Any, Any]:
    """The model and tokenizer of a package :func:`save` wrote, on :func:`device`, for
    evaluation."""
    offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model: Any = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model.to(device()).eval()
    return model, tokenizer
