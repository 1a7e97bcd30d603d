"""The candidate models of a language-model project, declared in its ``candidates.yaml``::

    candidates:
      - name: gpt2-small                      # trained from scratch on the training set
        architecture: {n_layer: 2, n_embd: 64, n_head: 4, n_positions: 128}
        tokenizer: {vocab_size: 2000}         # a byte-level BPE tokenizer, trained in-process
        training: {epochs: 4, batch_size: 16, learning_rate: 0.003}
      - name: my-model                        # a local causal LM saved with save_pretrained
        pretrained: /models/my-model          # loaded offline (nothing is downloaded)
        training: {epochs: 1, learning_rate: 0.00005}   # fine-tuning; leave out to evaluate as is

The file is read when the pipeline is compiled (each candidate becomes steps of its own), so a
mistake in it is an error naming the candidate and the field. Whether a ``pretrained`` folder
holds a causal LM is checked when its step runs: the other candidates still finish.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticError

from lockgate.config.fields import Name
from lockgate.errors import ValidationError


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Architecture(_Spec):
    """A GPT-2 built from its configuration (randomly initialised)."""

    type: Literal["gpt2"] = "gpt2"
    n_layer: int = Field(default=2, ge=1, le=48)
    n_embd: int = Field(default=64, ge=8, le=4096)
    n_head: int = Field(default=4, ge=1, le=64)
    n_positions: int = Field(default=128, ge=32, le=4096)

    @model_validator(mode="after")
    def _heads_divide(self) -> Architecture:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        return self


class TokenizerSpec(_Spec):
    """A byte-level BPE tokenizer trained on the training texts."""

    vocab_size: int = Field(default=2000, ge=300, le=100_000)
    min_frequency: int = Field(default=2, ge=1)


class TrainingSpec(_Spec):
    epochs: int = Field(default=1, ge=1, le=1000)
    batch_size: int = Field(default=16, ge=1, le=4096)
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    #: Stop after this many optimiser steps (all epochs when unset).
    max_steps: int | None = Field(default=None, ge=1)
    #: Texts longer than this many tokens are cut (default: the model's context length).
    max_length: int | None = Field(default=None, ge=8)


class Candidate(_Spec):
    name: Name
    description: str = ""
    pretrained: str | None = None
    architecture: Architecture | None = None
    tokenizer: TokenizerSpec | None = None
    training: TrainingSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Candidate:
        if (self.pretrained is None) == (self.architecture is None):
            raise ValueError("give exactly one of pretrained (a model folder) or architecture")
        if self.pretrained is not None and self.tokenizer is not None:
            raise ValueError("a pretrained model brings its own tokenizer; remove tokenizer")
        if self.pretrained is not None and not self.pretrained.strip():
            raise ValueError("pretrained is empty; give the folder save_pretrained wrote")
        return self

    @property
    def from_scratch(self) -> bool:
        return self.architecture is not None

    @property
    def trains(self) -> bool:
        """Whether the candidate is trained (from scratch) or fine-tuned before evaluation."""
        return self.from_scratch or self.training is not None

    def tokenizer_spec(self) -> TokenizerSpec:
        return self.tokenizer or TokenizerSpec()

    def training_spec(self) -> TrainingSpec:
        return self.training or TrainingSpec()

    def pretrained_path(self, base: Path) -> Path:
        """The pretrained folder; a relative one is relative to ``base`` (the pipeline folder)."""
        assert self.pretrained is not None
        path = Path(self.pretrained).expanduser()
        return path if path.is_absolute() else base / path

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def fingerprint(candidate: Candidate, base: Path) -> str:
    """What a pretrained candidate's folder holds (names, sizes, modification times), so that a
    changed model is trained and evaluated again rather than taken from the cache; empty for a
    candidate built from scratch."""
    import hashlib

    if candidate.pretrained is None:
        return ""
    folder = candidate.pretrained_path(base)
    if not folder.is_dir():
        return "missing"
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class CandidatesFile(_Spec):
    candidates: list[Candidate] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CandidatesFile:
        names = [c.name for c in self.candidates]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"candidate names must be unique; {', '.join(twice)} appear twice")
        return self


def parse(raw: Any, where: str) -> list[Candidate]:
    """The candidates of a parsed document; problems name the candidate and the field."""
    try:
        return list(CandidatesFile.model_validate(raw).candidates)
    except PydanticError as exc:
        problems = "; ".join(_problem(raw, e) for e in exc.errors())
        raise ValidationError(
            f"{where} is not valid: {problems}",
            hint="See the comments at the top of candidates.yaml for the fields.",
        ) from None


def load(path: Path) -> list[Candidate]:
    """The candidates declared in the YAML file ``path``."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}.") from None
    except yaml.YAMLError as exc:
        raise ValidationError(f"{path} is not valid YAML: {exc}") from None
    return parse(raw, str(path))


def from_json(document: dict[str, Any]) -> Candidate:
    """A candidate passed to a step as JSON (its ``to_json()``)."""
    return parse({"candidates": [document]}, "the candidate")[0]


def _problem(raw: Any, error: Any) -> str:
    loc = list(error["loc"])
    label = ".".join(str(p) for p in loc) or "(top)"
    if len(loc) >= 2 and loc[0] == "candidates" and isinstance(loc[1], int):
        try:
            name = raw["candidates"][loc[1]].get("name")
        except (KeyError, IndexError, TypeError, AttributeError):
            name = None
        rest = ".".join(str(p) for p in loc[2:])
        who = f"candidate {name!r}" if name else f"candidate #{loc[1] + 1}"
        label = f"{who}{': ' + rest if rest else ''}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{label}: {message}"
