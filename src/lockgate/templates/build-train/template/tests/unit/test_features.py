"""The feature helpers of the pipeline steps (pipeline/features.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from features import SEXES, one_hot_sex, split

DATA = Path(__file__).resolve().parents[2] / "pipeline" / "data"
RAW_COLUMNS = [
    "sex",
    "length",
    "diameter",
    "height",
    "whole weight",
    "shucked weight",
    "viscera weight",
    "shell weight",
    "rings",
]


def test_the_shipped_csv_has_the_columns_the_steps_read() -> None:
    assert list(pd.read_csv(DATA / "abalone.csv", nrows=0).columns) == RAW_COLUMNS


def test_one_hot_sex_replaces_sex_by_one_column_per_value() -> None:
    frame = pd.DataFrame({"sex": ["M", "F", "I", "M"], "length": [0.4, 0.5, 0.3, 0.6]})
    out = one_hot_sex(frame)
    assert list(out.columns) == ["length", "sex_F", "sex_I", "sex_M"]
    assert out["sex_M"].tolist() == [1, 0, 0, 1]
    assert out["sex_F"].tolist() == [0, 1, 0, 0]
    assert out["sex_I"].tolist() == [0, 0, 1, 0]
    assert out["length"].tolist() == [0.4, 0.5, 0.3, 0.6]


def test_every_shipped_row_gets_exactly_one_sex_column() -> None:
    raw = pd.read_csv(DATA / "abalone.csv")
    assert set(raw["sex"]) == set(SEXES)
    out = one_hot_sex(raw)
    assert (out[[f"sex_{s}" for s in SEXES]].sum(axis=1) == 1).all()


def test_split_is_70_15_15_disjoint_and_complete() -> None:
    frame = pd.DataFrame({"id": range(1000)})
    parts = split(frame, seed=42)
    assert {name: len(part) for name, part in parts.items()} == {
        "train": 700,
        "validation": 150,
        "test": 150,
    }
    ids = {name: set(part["id"]) for name, part in parts.items()}
    assert not ids["train"] & ids["validation"]
    assert not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    assert ids["train"] | ids["validation"] | ids["test"] == set(range(1000))


def test_split_depends_only_on_the_seed() -> None:
    frame = pd.DataFrame({"id": range(100)})
    first, again = split(frame, seed=7), split(frame, seed=7)
    assert first["test"]["id"].tolist() == again["test"]["id"].tolist()
    assert first["test"]["id"].tolist() != split(frame, seed=8)["test"]["id"].tolist()
