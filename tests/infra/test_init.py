"""lockgate init: the home, each environment's stores and keys, and idempotence."""

from __future__ import annotations

import stat

import pytest

from lockgate.auth.principal import Principal
from lockgate.config.home import Home
from lockgate.errors import ConflictError, ValidationError
from lockgate.infra.bootstrap import init
from lockgate.infra.service import state_store
from lockgate.platform import Platform
from lockgate.store.migrate import SCHEMA_HEAD
from support import run_cli


def test_init_bootstraps_every_environment(home: Home, admin: Principal) -> None:
    result = init(home, admin, org="acme")
    assert result.created_home
    platform = Platform.open(home)
    assert platform.env_names == ["dev", "preprod", "prod"]
    for name in platform.env_names:
        env = platform.env(name)
        assert env.store.revision() == SCHEMA_HEAD
        assert (home.root / "envs" / name / "metadata.db").is_file()
        assert env.artifacts.exists()
        for key in ("signing.pem", "encryption.key"):
            mode = stat.S_IMODE((home.root / "keys" / name / key).stat().st_mode)
            assert mode == 0o600, (name, key, oct(mode))
        assert stat.S_IMODE((home.root / "keys" / name).stat().st_mode) == 0o700
    state = state_store(platform).current()
    assert state is not None and state.version == 1 and state.operation == "init"
    assert f'dev.binding["{admin.name}/platform-admin"]' in state.resources


def test_init_twice_changes_nothing(home: Home, admin: Principal) -> None:
    init(home, admin, org="acme")
    toml_before = home.platform_file.read_text()
    again = init(home, admin)
    assert not again.changed
    assert home.platform_file.read_text() == toml_before
    assert state_store(Platform.open(home)).version_numbers() == [1]
    cli = run_cli(home, "init")
    assert cli.code == 0, cli.err
    assert "already initialised; nothing changed" in cli.out


def test_init_repairs_a_missing_key(home: Home, admin: Principal) -> None:
    init(home, admin, org="acme")
    (home.root / "keys" / "prod" / "signing.pem").unlink()
    again = init(home, admin)
    assert [c.address for c in again.applied] == ["prod.keys"]
    assert (home.root / "keys" / "prod" / "signing.pem").is_file()


def test_init_refuses_a_different_org_or_environments(home: Home, admin: Principal) -> None:
    init(home, admin, org="acme")
    with pytest.raises(ConflictError, match="organisation 'acme'"):
        init(home, admin, org="other")
    with pytest.raises(ConflictError, match=r"Edit .*platform\.toml"):
        init(home, admin, environments=["dev"])


def test_single_environment_and_custom_list(tmp_path, admin: Principal) -> None:  # type: ignore[no-untyped-def]
    one = Home(tmp_path / "one")
    assert run_cli(one, "init", "--single-environment").code == 0
    assert Platform.open(one).env_names == ["dev"]
    two = Home(tmp_path / "two")
    assert run_cli(two, "init", "--environments", "dev, prod").code == 0
    assert Platform.open(two).env_names == ["dev", "prod"]


@pytest.mark.parametrize("envs", [["dev", "Prod"], ["dev", "dev"], ["../x"]])
def test_bad_environment_names_create_nothing(
    home: Home, admin: Principal, envs: list[str]
) -> None:
    with pytest.raises(ValidationError):
        init(home, admin, environments=envs)
    assert not home.root.exists()


def test_new_environment_in_platform_toml_is_bootstrapped(home: Home, admin: Principal) -> None:
    init(home, admin, org="acme", environments=["dev", "prod"])
    text = home.platform_file.read_text()
    text = text.replace('environments = ["dev", "prod"]', 'environments = ["dev", "prod", "qa"]')
    text += "\n[environments.qa]\n[environments.qa.network]\nport_range = [23000, 23999]\n"
    home.platform_file.write_text(text)
    result = init(home, admin)
    assert {c.resource.env for c in result.applied} == {"qa"}
    assert Platform.open(home).env("qa").store.revision() == SCHEMA_HEAD
