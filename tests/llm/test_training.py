"""Building, training, packaging and loading causal LMs, on the CPU, with nothing downloaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lockgate.errors import ValidationError
from lockgate.llm import scoring, training
from lockgate.llm.candidates import Architecture, TokenizerSpec, TrainingSpec

pytest.importorskip("transformers", reason="needs lockgate[llm]")

TEXTS = [
    f"Question: What is {a} plus {b}?\nAnswer: {a + b}" for a in range(12) for b in range(12)
] + ["Question: Who painted The Dance Class?\nAnswer: Edgar Dégas"]
ARCH = Architecture(n_layer=1, n_embd=32, n_head=2, n_positions=64)


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return training.train_tokenizer(TEXTS, TokenizerSpec(vocab_size=300, min_frequency=1))


def test_the_tokenizer_encodes_any_text_and_back(tokenizer: object) -> None:
    tok: object = tokenizer
    for text in (TEXTS[-1], "never seen: ünïcødé ✓ 🚀"):
        ids = tok(text)["input_ids"]  # type: ignore[operator]
        assert tok.decode(ids) == text  # type: ignore[attr-defined]
    assert tok.eos_token == tok.pad_token == training.END  # type: ignore[attr-defined]
    assert len(tok) <= 300  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="training set is empty"):
        training.train_tokenizer([], TokenizerSpec())


def test_training_lowers_the_loss_and_says_what_it_did(tokenizer: object) -> None:
    model = training.build(ARCH, tokenizer)
    assert training.context_length(model) == 64
    before = scoring.perplexity(model, tokenizer, TEXTS[:20])
    report = training.train(
        model,
        tokenizer,
        TEXTS,
        TrainingSpec(epochs=3, batch_size=16, learning_rate=5e-3),
        seed=1,
        log=lambda line: None,
    )
    assert report["steps"] == 3 * 10 and report["epochs"] == 3
    assert report["final_loss"] < report["first_loss"]
    assert report["device"] == "cpu" and report["steps_per_s"] > 0
    assert scoring.perplexity(model, tokenizer, TEXTS[:20]) < before / 2
    capped = training.train(
        model, tokenizer, TEXTS, TrainingSpec(epochs=5, max_steps=3), seed=1, log=lambda line: None
    )
    assert capped["steps"] == 3
    with pytest.raises(ValidationError, match="training set is empty"):
        training.train(model, tokenizer, [], TrainingSpec(), seed=1)


def test_training_is_repeatable_with_a_seed(tokenizer: object) -> None:
    spec = TrainingSpec(epochs=1, batch_size=32, learning_rate=5e-3)
    losses = []
    for _ in range(2):
        model = training.build(ARCH, tokenizer, seed=5)
        losses.append(
            training.train(model, tokenizer, TEXTS, spec, seed=3, log=print)["final_loss"]
        )
    assert losses[0] == losses[1]
    weights = [
        training.build(ARCH, tokenizer, seed=s).transformer.wte.weight.detach() for s in (5, 5, 6)
    ]
    assert weights[0].equal(weights[1]) and not weights[0].equal(weights[2])


def test_a_saved_package_serves_within_its_context(tokenizer: object, tmp_path: Path) -> None:
    from lockgate.serving import formats

    model = training.build(ARCH, tokenizer)
    package = training.save(model, tokenizer, tmp_path / "package")
    manifest = json.loads((package / "lockgate-model.json").read_text())
    assert manifest["format"] == "text-generation"
    assert manifest["limits"] == {"max_input_tokens": 48, "max_new_tokens": 16}
    loaded, loaded_tokenizer = training.load(package)
    long_prompt = "Question: " + "very " * 200 + "long?\nAnswer:"
    (answer,) = scoring.answer(
        loaded, loaded_tokenizer, [long_prompt], max_new_tokens=16, max_input_tokens=48
    )
    assert isinstance(answer, str)
    with pytest.raises(ValidationError, match="no room for a prompt: 64 new tokens"):
        scoring.answer(loaded, loaded_tokenizer, ["hi"], max_new_tokens=64, max_input_tokens=0)
    served = formats.load(package)
    body, _ = served.invoke(
        json.dumps({"inputs": "Question: What is 2 plus 3?\nAnswer:"}).encode(),
        "application/json",
        "application/json",
    )
    assert isinstance(json.loads(body)[0]["generated_text"], str)


def test_a_pretrained_folder_loads_and_fine_tunes(lm_dir: Path) -> None:
    model, tokenizer = training.load_pretrained(lm_dir, "tiny")
    assert tokenizer.pad_token is not None
    report = training.train(
        model, tokenizer, ["the capital of france is paris"] * 8, TrainingSpec(batch_size=4), seed=1
    )
    assert report["steps"] == 2


def test_a_pretrained_folder_that_is_not_a_causal_lm_is_named(lm_dir: Path, tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    with pytest.raises(ValidationError, match=r"candidate 'gone': .*gone does not exist"):
        training.load_pretrained(tmp_path / "gone", "gone")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValidationError, match=r"has no config\.json: it is not a model saved"):
        training.load_pretrained(tmp_path / "empty", "empty")
    encoder = tmp_path / "encoder"
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        is_decoder=False,
    )
    BertModel(config).save_pretrained(encoder)
    (encoder / "config.json").write_text(
        json.dumps({**json.loads((encoder / "config.json").read_text()), "model_type": "vit"})
    )
    with pytest.raises(
        ValidationError,
        match=r"candidate 'enc': .* is not a causal language model \(model_type 'vit'\)",
    ):
        training.load_pretrained(encoder, "enc")
    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(lm_dir, no_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (no_tokenizer / name).unlink(missing_ok=True)
    with pytest.raises(ValidationError, match="has no usable tokenizer"):
        training.load_pretrained(no_tokenizer, "bare")


def test_share_cpus_gives_each_parallel_step_at_least_one_thread() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        assert training.share_cpus(1000) == 1
        assert training.share_cpus(1) >= 1
    finally:
        torch.set_num_threads(before)
