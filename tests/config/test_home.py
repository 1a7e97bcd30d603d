from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.config.home import Home
from lockgate.config.names import check_name, check_principal, parameter_environment
from lockgate.errors import ValidationError


def test_home_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path / "from-env"))
    assert Home.resolve(str(tmp_path / "flag")).root == tmp_path / "flag"
    assert Home.resolve().root == tmp_path / "from-env"
    monkeypatch.delenv("LOCKGATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert Home.resolve().root == tmp_path / "user" / ".lockgate"


def test_paths_cannot_escape_the_home(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    assert home.inside("envs/dev") == tmp_path / "h" / "envs" / "dev"
    for bad in ("../elsewhere", "envs/../../x", "/etc/passwd"):
        with pytest.raises(ValidationError, match="outside the platform home"):
            home.inside(bad)
    with pytest.raises(ValidationError, match="not a valid name"):
        home.env_dir("../../etc")


@pytest.mark.parametrize("name", ["dev", "pre-prod", "p2", "a" * 40])
def test_good_names(name: str) -> None:
    assert check_name(name, "environment") == name


@pytest.mark.parametrize(
    "name", ["", "Dev", "2dev", "dev-", "de--v", "dev_1", "a" * 41, "dev/x", "dév"]
)
def test_bad_names(name: str) -> None:
    with pytest.raises(ValidationError, match="lowercase letters"):
        check_name(name, "environment")


def test_principals_and_parameter_names() -> None:
    assert check_principal("user:alice.smith") == "user:alice.smith"
    assert check_principal("service:ci-fraud") == "service:ci-fraud"
    for bad in ("alice", "user:", "root:x", "user:a b"):
        with pytest.raises(ValidationError):
            check_principal(bad)
    assert parameter_environment("/lockgate/prod/db/password") == "prod"
    for bad in (
        "/lockgate/prod",
        "lockgate/dev/x",
        "/lockgate/dev/../prod/x",
        "/lockgate/Dev/x",
        "/lockgate/dev/a b",
    ):
        with pytest.raises(ValidationError, match="not valid"):
            parameter_environment(bad)
