"""Parameters, plain and secure: the clear value of a secure one never leaks."""

from __future__ import annotations

import json
import sqlite3

import pytest

from lockgate.auth.principal import Principal
from lockgate.config.home import Home
from lockgate.errors import ConflictError, NotFoundError, ValidationError
from lockgate.infra import service as infra
from lockgate.parameters import service
from lockgate.platform import Platform
from support import run_cli

SECRET = "hunter2-Zq9!-very-secret"


def _everything_written(home: Home) -> str:
    """Every byte under the home, decoded loosely: stores, state, logs, keys."""
    chunks = []
    for path in home.root.rglob("*"):
        if path.is_file():
            chunks.append(path.read_bytes().decode("latin-1"))
    return "\n".join(chunks)


def test_plain_parameter_round_trip(platform: Platform, admin: Principal) -> None:
    put = service.put(platform, admin, "/lockgate/dev/train/epochs", "20", description="epochs")
    assert put.version == 1 and put.value == "20" and not put.managed
    assert service.put(platform, admin, "/lockgate/dev/train/epochs", "30").version == 2
    got = service.get(platform, admin, "/lockgate/dev/train/epochs")
    assert got.value == "30" and got.description == "epochs"
    names = [
        p.name
        for p in service.list_parameters(platform, admin, env="dev", prefix="/lockgate/dev/train")
    ]
    assert names == ["/lockgate/dev/train/epochs"]
    service.delete(platform, admin, "/lockgate/dev/train/epochs")
    with pytest.raises(NotFoundError, match="lockgate param list --env dev"):
        service.get(platform, admin, "/lockgate/dev/train/epochs")


def test_secure_value_never_appears_outside_decrypt(
    platform: Platform, admin: Principal, home: Home
) -> None:
    infra.apply(platform, admin, confirm=lambda plan: True)
    name = "/lockgate/prod/db/password"
    outputs = [
        run_cli(home, "param", "put", name, "-", "--secure", stdin=SECRET + "\n"),
        run_cli(home, "param", "get", name),
        run_cli(home, "param", "get", name, "--json"),
        run_cli(home, "param", "list"),
        run_cli(home, "param", "list", "--json"),
        run_cli(home, "audit", "list", "--env", "prod", "--json"),
        run_cli(home, "infra", "plan", "--json"),
        run_cli(home, "infra", "show", "--json"),
        run_cli(home, "env", "show", "prod", "--json"),
        run_cli(home, "status", "--json"),
        run_cli(home, "param", "put", name, "plain-now"),  # an error must not echo the value
    ]
    for result in outputs:
        assert SECRET not in result.out + result.err
    assert outputs[-1].code == ConflictError.exit_code
    assert "exists as a secure parameter" in outputs[-1].err
    assert json.loads(outputs[2].out)["value"] is None
    assert SECRET not in _everything_written(home)
    with sqlite3.connect(home.root / "envs" / "prod" / "metadata.db") as conn:
        [(stored,)] = conn.execute("SELECT value FROM parameters WHERE name = ?", (name,))
    assert stored.startswith("gAAAA")  # a Fernet token

    decrypted = run_cli(home, "param", "get", name, "--decrypt")
    assert decrypted.code == 0 and decrypted.out.strip() == SECRET
    events = json.loads(run_cli(home, "audit", "list", "--env", "prod", "--json").out)
    assert [e["action"] for e in events][-2:] == ["param.put", "param.decrypt"]


def test_secure_parameter_from_platform_toml(
    home: Home, admin: Principal, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = home.platform_file.read_text()
    text += '\n[parameters."/lockgate/dev/api/token"]\nsecure = true\nvalue_env = "LG_API_TOKEN"\n'
    home.platform_file.write_text(text)
    platform = Platform.open(home)
    monkeypatch.setenv("LG_API_TOKEN", SECRET)
    infra.apply(platform, admin, confirm=lambda plan: True)
    assert service.get(platform, admin, "/lockgate/dev/api/token", decrypt=True).value == SECRET
    assert not infra.plan(platform, admin).has_changes
    monkeypatch.setenv("LG_API_TOKEN", SECRET + "-rotated")
    [change] = infra.plan(platform, admin).changes
    assert change.action == "update" and [a for a, _, _ in change.diff()] == ["fingerprint"]
    infra.apply(platform, admin, confirm=lambda plan: True)
    assert (
        service.get(platform, admin, "/lockgate/dev/api/token", decrypt=True).value
        == SECRET + "-rotated"
    )
    with pytest.raises(ConflictError, match="managed by"):
        service.put(platform, admin, "/lockgate/dev/api/token", "x", secure=True)
    assert SECRET not in _everything_written(home)


def test_managed_parameter_cannot_be_put_or_deleted_by_hand(
    platform: Platform, admin: Principal
) -> None:
    infra.apply(platform, admin, confirm=lambda plan: True)
    with pytest.raises(ConflictError, match="run `lockgate infra apply`"):
        service.put(platform, admin, "/lockgate/dev/data/bucket", "file:///elsewhere")
    with pytest.raises(ConflictError, match="managed by"):
        service.delete(platform, admin, "/lockgate/dev/data/bucket")


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("/lockgate/qa/x", "1", "environment 'qa' is not declared"),
        ("lockgate/dev/x", "1", "is not valid"),
        ("/lockgate/dev/../prod/x", "1", "is not valid"),
        ("/lockgate/dev/x", "", "value is empty"),
        ("/lockgate/dev/x", "v" * 20_000, "larger than"),
    ],
)
def test_bad_parameter_input(
    platform: Platform, admin: Principal, name: str, value: str, error: str
) -> None:
    with pytest.raises((ValidationError, NotFoundError), match=error):
        service.put(platform, admin, name, value)


def test_cli_put_without_value_is_a_clear_error(platform: Platform, home: Home) -> None:
    result = run_cli(home, "param", "put", "/lockgate/dev/x", "--secure", stdin="")
    assert result.code == ValidationError.exit_code
    assert "Give VALUE, or '-'" in result.err
