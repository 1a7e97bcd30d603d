"""The factual-knowledge score and the data it reads, on the shipped TriviaQA samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.errors import ValidationError
from lockgate.llm import evaluation as ev

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "triviaqa"


@pytest.mark.parametrize(
    ("generation", "answer", "correct"),
    [
        ("It was Michael  CONNELLY, of course", "Michael Connelly<OR>Roy Lindell", True),
        ("roy\\nlindell", "Michael Connelly<OR>Roy Lindell", False),
        ("roy\tlindell wrote it", "Michael Connelly<OR>Roy Lindell", True),
        ("Brazil", "Brasil<OR>Brazil", True),
        ("Argentina", "Brasil<OR>Brazil", False),
        ("", "Paris", False),
    ],
)
def test_a_generation_is_correct_when_it_contains_an_alias(
    generation: str, answer: str, correct: bool
) -> None:
    assert ev.is_correct(generation, answer) is correct


def test_accuracy_over_examples() -> None:
    examples = [
        ev.Example("q1", "Paris"),
        ev.Example("q2", "Rome<OR>Roma"),
        ev.Example("q3", "Oslo"),
    ]
    assert ev.accuracy(["paris!", "Roma", "Bergen"], examples) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        ev.accuracy(["only one"], examples)


def test_the_samples_read_and_malformed_lines_are_named(tmp_path: Path) -> None:
    if SAMPLES.is_dir():
        examples = ev.read_examples(SAMPLES / "evaluation.jsonl")
        assert examples and all(e.aliases for e in examples)
    bad = tmp_path / "evaluation.jsonl"
    bad.write_text('{"question": "a?", "answer": "b"}\n{"question": "c?"}\n')
    with pytest.raises(ValidationError, match=r"evaluation\.jsonl line 2 needs"):
        ev.read_examples(bad)
    bad.write_text('{"question": "a?", "answer": "b"}\nnot json\n')
    with pytest.raises(ValidationError, match="line 2 is not JSON"):
        ev.read_examples(bad)


def test_prompt_templates_need_the_question_slot() -> None:
    assert ev.prompt("Q: {question}\nA:", "Who?") == "Q: Who?\nA:"
    assert (
        ev.training_text("Q: {question} A:", ev.Example("Who?", "Ann<OR>Anne")) == "Q: Who? A: Ann"
    )
    with pytest.raises(ValidationError, match=r"no \{question\} slot"):
        ev.check_template("Answer:")
    with pytest.raises(ValidationError, match=r"may only use \{question\}"):
        ev.check_template("{question} {context}")
