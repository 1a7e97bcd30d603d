"""The real ``lockgate`` command: help, JSON listings, exit codes and one-line errors."""

from __future__ import annotations

import json

import pytest

from lockgate.config.home import Home
from lockgate.errors import (
    ConfigError,
    NotFoundError,
    NotInitialisedError,
    PermissionDeniedError,
    ValidationError,
    error_table,
)
from lockgate.platform import Platform
from support import run_cli


def test_help_lists_the_commands_with_examples(home: Home) -> None:
    result = run_cli(home, "--help")
    assert result.code == 0
    for command in ("init", "status", "infra", "env", "param", "audit"):
        assert command in result.out
    infra_help = run_cli(home, "infra", "apply", "--help")
    assert "Examples" in infra_help.out and "lockgate infra apply --yes" in infra_help.out


def test_the_golden_path_of_this_issue(home: Home) -> None:
    assert run_cli(home, "init", "--org", "acme").code == 0
    plan = run_cli(home, "infra", "plan")
    assert plan.code == 2 and "Plan: 18 to create, 0 to update, 0 to delete." in plan.out
    assert run_cli(home, "infra", "apply", "--yes").code == 0
    again = run_cli(home, "infra", "plan", "--json")
    assert again.code == 0 and json.loads(again.out)["has_changes"] is False
    status = json.loads(run_cli(home, "status", "--json").out)
    assert [e["name"] for e in status["environments"]] == ["dev", "preprod", "prod"]
    assert all(e["ready"] for e in status["environments"]) and status["lock"] is None
    assert status["state_version"] == 2


def test_every_listing_and_show_speaks_json(platform: Platform, home: Home) -> None:
    assert run_cli(home, "infra", "apply", "--yes").code == 0
    for args in (
        ["status"],
        ["env", "list"],
        ["env", "show", "dev"],
        ["param", "list"],
        ["param", "get", "/lockgate/dev/data/bucket"],
        ["audit", "list", "--env", "dev"],
        ["audit", "verify", "--env", "dev"],
        ["infra", "show"],
        ["infra", "history"],
        ["infra", "plan"],
    ):
        result = run_cli(home, *args, "--json")
        assert result.code in (0, 2), (args, result.err)
        json.loads(result.out)


def test_apply_without_a_terminal_needs_yes(platform: Platform, home: Home) -> None:
    result = run_cli(home, "infra", "apply")
    assert result.code == 10
    assert "Pass --yes" in result.err
    assert run_cli(home, "infra", "plan").code == 2  # nothing was applied


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (
            ["env", "show", "qa"],
            NotFoundError.exit_code,
            "Declared environments: dev, preprod, prod",
        ),
        (["param", "get", "/lockgate/dev/nope"], NotFoundError.exit_code, "does not exist in dev"),
        (["param", "put", "not-a-name", "x"], ValidationError.exit_code, "A parameter name is"),
        (["infra", "unlock", "01ABC"], NotFoundError.exit_code, "not held"),
        (["audit", "list", "--env", "qa"], NotFoundError.exit_code, "not declared"),
    ],
)
def test_errors_are_one_clear_message(
    platform: Platform, home: Home, args: list[str], code: int, text: str
) -> None:
    result = run_cli(home, *args)
    assert result.code == code, result.err
    assert text in result.err
    assert "Traceback" not in result.err


def test_invalid_platform_file_names_file_and_key_and_changes_nothing(
    platform: Platform, home: Home
) -> None:
    before = sorted(p.name for p in (home.state_dir / "versions").iterdir())
    home.platform_file.write_text(
        home.platform_file.read_text().replace(
            "[environments.dev.quotas]", "[environments.dev.quota]"
        )
    )
    result = run_cli(home, "infra", "apply", "--yes")
    assert result.code == ConfigError.exit_code
    assert (
        str(home.platform_file) in result.err
        and "unknown key 'quota' in [environments.dev]" in result.err
    )
    assert sorted(p.name for p in (home.state_dir / "versions").iterdir()) == before
    assert not (home.state_dir / "lock.json").exists()


def test_no_home_says_to_init(home: Home) -> None:
    result = run_cli(home, "status")
    assert result.code == NotInitialisedError.exit_code and "lockgate init" in result.err


def test_audit_verify_detects_tampering(platform: Platform, home: Home) -> None:
    import sqlite3

    assert run_cli(home, "audit", "verify", "--env", "dev").code == 0
    with sqlite3.connect(home.root / "envs" / "dev" / "metadata.db") as conn:
        conn.execute("UPDATE audit_events SET actor = 'user:nobody' WHERE seq = 3")
    result = run_cli(home, "audit", "verify", "--env", "dev")
    assert result.code == 9 and "event 3 was altered" in result.err


def test_denied_cli_call_names_the_role(platform: Platform, home: Home) -> None:
    """The OS user is demoted to viewer in prod by an admin's apply; its next apply is refused."""
    text = home.platform_file.read_text().replace(
        'environments = ["dev", "preprod", "prod"]\n\n# Parameters',
        'environments = ["dev", "preprod"]\n\n# Parameters',
    )
    admin_line = text.index('role = "platform-admin"')
    principal = text[text.rindex('principal = "', 0, admin_line) :].split('"')[1]
    text += f'\n[[bindings]]\nprincipal = "{principal}"\nrole = "viewer"\nenvironments = ["prod"]\n'
    home.platform_file.write_text(text)
    assert run_cli(home, "infra", "apply", "--yes").code == 0
    result = run_cli(home, "infra", "apply", "--yes")
    assert result.code == PermissionDeniedError.exit_code
    assert (
        f"{principal} may not infra:apply in prod: that needs the role platform-admin" in result.err
    )
    denied = json.loads(run_cli(home, "audit", "list", "--env", "prod", "--json").out)[-1]
    assert denied["outcome"] == "denied" and denied["action"] == "infra:apply"


def test_error_table_codes_are_distinct() -> None:
    codes = [(code, exit_code) for _, code, exit_code, _ in error_table()]
    assert len({c for c, _ in codes}) == len(codes)
    assert 2 not in {e for _, e in codes}  # 2 means "plan has changes"
