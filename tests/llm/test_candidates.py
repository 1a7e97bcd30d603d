"""candidates.yaml: what a candidate may be, and errors that name the candidate and the field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lockgate.errors import ValidationError
from lockgate.llm import candidates

SCRATCH = {"name": "tiny", "architecture": {"n_layer": 1, "n_embd": 32, "n_head": 2}}


def test_a_scratch_and_a_pretrained_candidate(tmp_path: Path) -> None:
    path = tmp_path / "candidates.yaml"
    path.write_text(
        "candidates:\n"
        "  - {name: tiny, architecture: {n_layer: 1, n_embd: 32, n_head: 2}}\n"
        "  - {name: mine, pretrained: models/mine, training: {epochs: 2}}\n"
        "  - {name: as-is, pretrained: /abs/model}\n"
    )
    tiny, mine, as_is = candidates.load(path)
    assert tiny.from_scratch and tiny.trains and tiny.tokenizer_spec().vocab_size == 2000
    assert tiny.training_spec().epochs == 1  # from scratch always trains, with the defaults
    assert not mine.from_scratch and mine.trains and mine.training_spec().epochs == 2
    assert not as_is.trains  # a pretrained model without `training` is only evaluated
    assert mine.pretrained_path(tmp_path) == tmp_path / "models" / "mine"
    assert as_is.pretrained_path(tmp_path) == Path("/abs/model")
    assert candidates.from_json(mine.to_json()) == mine


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        (
            {"name": "both", "pretrained": "/m", "architecture": {}},
            "candidate 'both': give exactly one",
        ),
        ({"name": "neither"}, "candidate 'neither': give exactly one"),
        (
            {**SCRATCH, "architecture": {"n_embd": 30, "n_head": 4}},
            "candidate 'tiny': architecture: n_embd (30) must be a multiple of n_head (4)",
        ),
        (
            {**SCRATCH, "training": {"learning_rate": 0}},
            "candidate 'tiny': training.learning_rate: Input should be greater than 0",
        ),
        (
            {**SCRATCH, "trainning": {}},
            "candidate 'tiny': trainning: Extra inputs are not permitted",
        ),
        ({**SCRATCH, "name": "Big_Model"}, "candidate 'Big_Model': name: "),
        ({"name": "p", "pretrained": "/m", "tokenizer": {}}, "brings its own tokenizer"),
        ({"architecture": {}}, "candidate #1: name: Field required"),
    ],
)
def test_a_bad_candidate_is_named(candidate: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match="is not valid") as info:
        candidates.parse({"candidates": [candidate]}, "candidates.yaml")
    assert message in str(info.value)


def test_the_file_itself_must_be_right(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read"):
        candidates.load(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("candidates: [\n")
    with pytest.raises(ValidationError, match="is not valid YAML"):
        candidates.load(broken)
    with pytest.raises(ValidationError, match="candidates: List should have at least 1 item"):
        candidates.parse({"candidates": []}, "x")
    with pytest.raises(ValidationError, match="tiny appear twice"):
        candidates.parse({"candidates": [SCRATCH, SCRATCH]}, "x")


def test_a_pretrained_folders_fingerprint_follows_its_files(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    [candidate] = candidates.parse({"candidates": [{"name": "m", "pretrained": "model"}]}, "x")
    assert candidates.fingerprint(candidate, tmp_path) == "missing"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    first = candidates.fingerprint(candidate, tmp_path)
    assert first == candidates.fingerprint(candidate, tmp_path)
    (folder / "model.safetensors").write_bytes(b"weights")
    second = candidates.fingerprint(candidate, tmp_path)
    assert second != first
    os.utime(folder / "model.safetensors", ns=(1, 1))
    assert candidates.fingerprint(candidate, tmp_path) != second
    [scratch] = candidates.parse({"candidates": [SCRATCH]}, "x")
    assert candidates.fingerprint(scratch, tmp_path) == ""
