"""Feature helpers, kept apart from the steps: editing one changes the code digest of the steps
that use it (and so misses their cache), not of the others."""

from __future__ import annotations

from typing import Any

SEXES = ("F", "I", "M")


def one_hot_sex(frame: Any) -> Any:
    """Replace the `sex` column by one 0/1 column per value."""
    for value in SEXES:
        frame[f"sex_{value}"] = (frame["sex"] == value).astype(int)
    return frame.drop(columns=["sex"])


def split(frame: Any, seed: int) -> dict[str, Any]:
    """Shuffle and split 70 / 15 / 15 into train, validation and test."""
    shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    n = len(shuffled)
    a, b = int(n * 0.70), int(n * 0.85)
    return {"train": shuffled.iloc[:a], "validation": shuffled.iloc[a:b], "test": shuffled.iloc[b:]}
