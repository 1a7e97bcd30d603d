"""The per-environment data files: slices of abalone.csv, line for line."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "pipeline" / "data"


def lines(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


def test_the_slices_are_consecutive_rows_of_the_full_file() -> None:
    full, dev, preprod = (
        lines("abalone.csv"),
        lines("abalone-dev.csv"),
        lines("abalone-preprod.csv"),
    )
    assert dev[0] == preprod[0] == full[0]  # the same header
    assert dev[1:] == full[1:1501]
    assert preprod[1:] == full[1501:3001]


def test_the_configured_sources_exist() -> None:
    import yaml

    config = yaml.safe_load((DATA.parents[1] / "lockgate.yaml").read_text())
    sources = {p["source"] for p in config["pipeline"]["per_environment"].values()}
    assert sources
    for source in sources:
        assert (DATA.parent / source).is_file(), source
