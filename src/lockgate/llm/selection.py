"""Choosing the best candidate from the evaluations of all of them.

Each candidate's evaluation is a document with ``status`` ``"ok"`` (and its scores) or
``"failed"`` (and an ``error``). The best finished candidate by the chosen metric wins; ties go to
the other metric, then to the name. The selection says which candidates failed, and why.
"""

from __future__ import annotations

import math
from typing import Any

from lockgate.errors import ValidationError

#: The metrics a selection can use, and whether higher is better.
METRICS = {"accuracy": True, "perplexity": False}


def check_metric(select_by: str) -> str:
    """``select_by`` if a selection can use it (checked before anything trains)."""
    if select_by not in METRICS:
        raise ValidationError(
            f"select_by {select_by!r} is not a metric the evaluation measures.",
            hint=f"Use one of: {', '.join(METRICS)}.",
        )
    return select_by


def select(select_by: str, evaluations: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The selection report: the winner, the ranking, every candidate's scores and failures."""
    check_metric(select_by)
    if not evaluations:
        raise ValidationError("there are no candidates to select from.")
    finished = {n: e for n, e in evaluations.items() if e.get("status") == "ok"}
    failed = {
        n: str(e.get("error") or "no evaluation")
        for n, e in evaluations.items()
        if e.get("status") != "ok"
    }
    if not finished:
        raise ValidationError(
            "no candidate finished: "
            + "; ".join(f"{n}: {error}" for n, error in sorted(failed.items())),
            hint="Fix the candidates in pipeline/candidates.yaml (the step logs have details).",
        )
    other = next(m for m in METRICS if m != select_by)
    ranking = sorted(
        finished, key=lambda n: (_rank(finished[n], select_by), _rank(finished[n], other), n)
    )
    best = finished[ranking[0]]
    return {
        "selected": ranking[0],
        "select_by": select_by,
        "ranking": ranking,
        "failed": failed,
        "metrics": {
            "candidate": ranking[0],
            "accuracy": best["accuracy"],
            "perplexity": best["perplexity"],
            "evaluated": best["evaluated"],
            "candidates_finished": len(finished),
            "candidates_failed": len(failed),
        },
        "samples": best.get("samples", []),
        "candidates": {
            n: {k: v for k, v in e.items() if k != "samples"}
            for n, e in sorted(evaluations.items())
        },
    }


def _rank(evaluation: dict[str, Any], metric: str) -> float:
    value = float(evaluation[metric])
    if math.isnan(value):
        return math.inf
    return -value if METRICS[metric] else value
