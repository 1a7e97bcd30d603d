"""The one policy check: roles applied from platform.toml, refusals that name the role, audited."""

from __future__ import annotations

import pytest

from lockgate.auth.audit import list_events
from lockgate.auth.principal import Principal
from lockgate.config.home import Home
from lockgate.errors import PermissionDeniedError
from lockgate.infra import service as infra
from lockgate.parameters import service as params
from lockgate.platform import Platform

ALICE = Principal("user:alice")  # a data scientist
LEAD = Principal("user:lena")  # a lead data scientist
MALLORY = Principal("user:mallory")  # bound nowhere

BINDINGS = """
[[bindings]]
principal = "user:alice"
role = "data-scientist"
environments = ["dev"]

[[bindings]]
principal = "user:alice"
role = "viewer"
environments = ["preprod", "prod"]

[[bindings]]
principal = "user:lena"
role = "lead-data-scientist"
environments = ["dev", "preprod", "prod"]
"""


@pytest.fixture
def team(platform: Platform, home: Home, admin: Principal) -> Platform:
    home.platform_file.write_text(home.platform_file.read_text() + BINDINGS)
    platform = Platform.open(home)
    infra.apply(platform, admin, confirm=lambda plan: True)
    return platform


def test_data_scientist_cannot_apply_and_is_audited(team: Platform) -> None:
    with pytest.raises(PermissionDeniedError) as info:
        infra.apply(team, ALICE, confirm=lambda plan: True)
    assert "user:alice may not infra:apply in dev" in info.value.message
    assert "platform-admin" in info.value.message
    with team.env("dev").store.transaction() as session:
        [event] = list_events(session, actor="user:alice")
    assert (event.action, event.outcome) == ("infra:apply", "denied")
    assert infra.current_lock(team) is None  # the refusal released the lock


def test_data_scientist_full_in_dev_read_only_in_prod(team: Platform) -> None:
    params.put(team, ALICE, "/lockgate/dev/exp/lr", "0.1")
    assert params.get(team, ALICE, "/lockgate/prod/data/bucket").value
    with pytest.raises(PermissionDeniedError, match="param:write in prod"):
        params.put(team, ALICE, "/lockgate/prod/exp/lr", "0.1")
    with pytest.raises(PermissionDeniedError, match="infra:plan in preprod"):
        infra.plan(team, ALICE)  # planning is platform-wide: it needs the permission everywhere
    assert infra.plan(team, LEAD) is not None


def test_decrypt_needs_its_own_permission(team: Platform, admin: Principal) -> None:
    params.put(team, admin, "/lockgate/preprod/db/password", "pw-1", secure=True)
    assert params.get(team, ALICE, "/lockgate/preprod/db/password").value is None
    with pytest.raises(PermissionDeniedError, match="param:decrypt"):
        params.get(team, ALICE, "/lockgate/preprod/db/password", decrypt=True)
    assert params.get(team, LEAD, "/lockgate/preprod/db/password", decrypt=True).value == "pw-1"


def test_unbound_principal_can_do_nothing(team: Platform) -> None:
    for call in (
        lambda: params.list_parameters(team, MALLORY),
        lambda: infra.plan(team, MALLORY),
        lambda: infra.history(team, MALLORY),
    ):
        with pytest.raises(PermissionDeniedError, match="user:mallory may not"):
            call()


def test_roles_change_only_when_applied(team: Platform, home: Home, admin: Principal) -> None:
    home.platform_file.write_text(
        home.platform_file.read_text().replace('role = "viewer"', 'role = "data-scientist"')
    )
    edited = Platform.open(home)
    with pytest.raises(PermissionDeniedError):
        params.put(edited, ALICE, "/lockgate/prod/exp/lr", "0.1")  # not yet applied
    infra.apply(edited, admin, confirm=lambda plan: True)
    params.put(edited, ALICE, "/lockgate/prod/exp/lr", "0.1")
