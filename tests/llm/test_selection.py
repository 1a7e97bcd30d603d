"""Choosing the best candidate: by the metric, ties, and failed candidates."""

from __future__ import annotations

from typing import Any

import pytest

from lockgate.errors import ValidationError
from lockgate.llm.selection import select


def ok(accuracy: float, perplexity: float) -> dict[str, Any]:
    return {
        "status": "ok",
        "accuracy": accuracy,
        "perplexity": perplexity,
        "evaluated": 50,
        "samples": [{"prompt": "q", "generated": "a", "correct": False}],
    }


def test_accuracy_picks_the_highest_and_perplexity_the_lowest() -> None:
    evaluations = {"a": ok(0.1, 30.0), "b": ok(0.3, 50.0), "c": ok(0.2, 20.0)}
    by_accuracy = select("accuracy", evaluations)
    assert by_accuracy["selected"] == "b" and by_accuracy["ranking"] == ["b", "c", "a"]
    assert by_accuracy["metrics"] == {
        "candidate": "b",
        "accuracy": 0.3,
        "perplexity": 50.0,
        "evaluated": 50,
        "candidates_finished": 3,
        "candidates_failed": 0,
    }
    assert by_accuracy["samples"] == evaluations["b"]["samples"]
    assert "samples" not in by_accuracy["candidates"]["a"]
    assert select("perplexity", evaluations)["ranking"] == ["c", "a", "b"]


def test_ties_go_to_the_other_metric_then_the_name() -> None:
    evaluations = {"z": ok(0.0, 40.0), "y": ok(0.0, 30.0), "x": ok(0.0, 30.0)}
    assert select("accuracy", evaluations)["ranking"] == ["x", "y", "z"]


def test_failed_candidates_are_listed_and_the_rest_still_compete() -> None:
    evaluations = {
        "good": ok(0.1, 30.0),
        "gone": {"status": "failed", "error": "training: ValidationError: /m does not exist"},
        "nan": ok(float("nan"), float("nan")),
    }
    report = select("accuracy", evaluations)
    assert report["selected"] == "good" and report["ranking"] == ["good", "nan"]
    assert report["failed"] == {"gone": "training: ValidationError: /m does not exist"}
    assert report["metrics"]["candidates_failed"] == 1


def test_nothing_to_select_is_an_error_that_names_each_failure() -> None:
    with pytest.raises(ValidationError, match=r"no candidate finished: a: boom; b: bang"):
        select(
            "accuracy",
            {
                "b": {"status": "failed", "error": "bang"},
                "a": {"status": "failed", "error": "boom"},
            },
        )
    with pytest.raises(ValidationError, match="select_by 'f1' is not a metric"):
        select("f1", {"a": ok(0.1, 2.0)})
    with pytest.raises(ValidationError, match="no candidates"):
        select("accuracy", {})
