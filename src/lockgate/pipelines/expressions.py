"""Evaluating the operands and comparisons of a compiled definition (conditions, inputs).

An operand is ``{"value": …}``, ``{"param": name}``, ``{"step": name, "key": [...]}`` or
``{"expr": {"op", "left", "right"}}``; step outputs are read through a callback, so this module
needs no store.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from typing import Any

OPS: dict[str, Callable[[Any, Any], Any]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
    "!=": operator.ne,
    "and": lambda a, b: bool(a and b),
    "or": lambda a, b: bool(a or b),
}


def resolve(ref: dict[str, Any], params: dict[str, Any], output_of: Callable[[str], Any]) -> Any:
    """The value of an operand; a missing key of a step's output is a ``KeyError`` naming it."""
    if "expr" in ref:
        return evaluate(ref["expr"], params, output_of)
    if "param" in ref:
        return params[ref["param"]]
    if "step" in ref:
        value = output_of(ref["step"])
        for key in ref.get("key", []):
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                raise KeyError(f"output of step {ref['step']!r} has no {key!r}") from None
        return value
    return ref["value"]


def evaluate(expr: dict[str, Any], params: dict[str, Any], output_of: Callable[[str], Any]) -> Any:
    left = resolve(expr["left"], params, output_of)
    right = resolve(expr["right"], params, output_of)
    return OPS[expr["op"]](left, right)


def show(value: Any) -> str:
    """A value as a condition's explanation shows it (floats to 4 significant digits)."""
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value, default=str)


def format_values(values: dict[str, Any]) -> str:
    """``k=v, …`` with floats to 4 significant digits (metrics in listings and summaries)."""
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
