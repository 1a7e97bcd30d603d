"""The shipped data, the candidates and the prompt: what the pipeline's steps rely on."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline import CANDIDATES, PROMPT

from lockgate.errors import ValidationError
from lockgate.llm import candidates, evaluation

PIPELINE = Path(__file__).resolve().parents[2] / "pipeline"
DATA = PIPELINE / "data"


@pytest.mark.parametrize(
    ("name", "rows"), [("train", 5000), ("validation", 500), ("evaluation", 50)]
)
def test_every_shipped_line_is_a_question_with_an_answer(name: str, rows: int) -> None:
    examples = evaluation.read_examples(DATA / f"{name}.jsonl")
    assert len(examples) == rows
    assert all(e.question.strip() and e.aliases for e in examples)


def test_evaluation_answers_list_their_aliases() -> None:
    examples = evaluation.read_examples(DATA / "evaluation.jsonl")
    assert sum(len(e.aliases) > 1 for e in examples) >= 40


def test_the_prompt_has_the_question_slot_and_pairs_end_with_the_first_alias() -> None:
    example = evaluation.Example("Who wrote Hamlet?", "William Shakespeare<OR>Shakespeare")
    [pair] = evaluation.pairs([example], PROMPT)
    assert pair["prompt"] == "Question: Who wrote Hamlet?\nAnswer:"
    assert pair["completion"] == " William Shakespeare"
    assert evaluation.is_correct("it was  william SHAKESPEARE.", pair["answer"])
    with pytest.raises(ValidationError, match=r"\{question\}"):
        evaluation.pairs([example], "Q: {q}")


def test_the_candidates_file_loads_with_unique_names() -> None:
    declared = candidates.load(PIPELINE / "candidates.yaml")
    assert declared == CANDIDATES and len({c.name for c in declared}) == len(declared) >= 1
    for candidate in declared:
        assert candidate.from_scratch or candidate.pretrained
