"""Question-answering data and the factual-knowledge score.

A data set is JSON lines of ``{"question": …, "answer": …}``; an answer lists its accepted
aliases separated by ``<OR>``. A generation is correct when, after case and whitespace
normalisation, it contains any alias. Prompts come from a template with a ``{question}`` slot.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lockgate.errors import ValidationError

ALIAS_SEPARATOR = "<OR>"
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Example:
    question: str
    answer: str

    @property
    def aliases(self) -> list[str]:
        return aliases(self.answer)


def aliases(answer: str) -> list[str]:
    """The accepted answers of ``answer`` (``A<OR>B<OR>C``), blanks dropped."""
    return [a.strip() for a in answer.split(ALIAS_SEPARATOR) if a.strip()]


def normalise(text: str) -> str:
    """Lower case, every run of whitespace one space, no space at either end."""
    return _SPACE.sub(" ", text.casefold()).strip()


def is_correct(generation: str, answer: str) -> bool:
    """Whether ``generation`` contains any accepted alias of ``answer`` (normalised)."""
    said = normalise(generation)
    return any(normalise(alias) in said for alias in aliases(answer))


def accuracy(generations: Iterable[str], examples: Iterable[Example]) -> float:
    pairs = list(zip(generations, examples, strict=True))
    if not pairs:
        raise ValidationError("accuracy needs at least one example.")
    return sum(is_correct(g, e.answer) for g, e in pairs) / len(pairs)


def read_examples(path: Path) -> list[Example]:
    """The examples of a JSON-lines file; a malformed line is an error naming its number."""
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}.") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise ValidationError(f"{path.name} line {number} is not JSON: {exc}.") from None
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("question"), str)
            or not isinstance(doc.get("answer"), str)
            or not doc["question"].strip()
            or not aliases(doc["answer"])
        ):
            raise ValidationError(
                f'{path.name} line {number} needs {{"question": TEXT, "answer": "ALIAS<OR>ALIAS…"}}.'
            )
        out.append(Example(doc["question"].strip(), doc["answer"]))
    if not out:
        raise ValidationError(f"{path.name} has no examples.")
    return out


def check_template(template: str) -> str:
    """A prompt template: it must have exactly the ``{question}`` slot."""
    if "{question}" not in template:
        raise ValidationError(
            f"the prompt template {template!r} has no {{question}} slot.",
            hint='For example: "Question: {question}\\nAnswer:"',
        )
    try:
        template.format(question="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValidationError(
            f"the prompt template {template!r} may only use {{question}} (found {exc}).",
            hint="Write a literal brace as {{ or }}.",
        ) from None
    return template


def prompt(template: str, question: str) -> str:
    return check_template(template).format(question=question)


def training_text(template: str, example: Example) -> str:
    """A prompt / completion pair as one training text: the prompt and the first alias."""
    return f"{prompt(template, example.question)} {example.aliases[0]}"


def pairs(examples: Iterable[Example], template: str) -> list[dict[str, str]]:
    """Prompt / completion pairs: the prompt from ``template``, the first alias (after a space)
    as the completion, and the whole answer (every alias) for scoring."""
    check_template(template)
    return [
        {
            "prompt": prompt(template, e.question),
            "completion": f" {e.aliases[0]}",
            "answer": e.answer,
        }
        for e in examples
    ]
