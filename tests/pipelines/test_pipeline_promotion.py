"""Pipeline promotion: the definition and its code snapshot, verified, once, along the order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lockgate.auth.audit import list_events as audit_events
from lockgate.auth.principal import Principal
from lockgate.config.home import Home
from lockgate.errors import (
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from lockgate.infra import service as infra
from lockgate.pipelines import service
from lockgate.pipelines.promotion import promote
from lockgate.platform import Platform
from lockgate.store import events
from support import run_cli

PROJECT = Path(__file__).parent / "projects" / "basic"
ALICE = Principal("user:alice")
TEAM = """
[[bindings]]
principal = "user:alice"
role = "data-scientist"
environments = ["dev"]
"""


@pytest.fixture
def team(platform: Platform, home: Home, admin: Principal, tmp_path: Path) -> Platform:
    home.platform_file.write_text(home.platform_file.read_text() + TEAM)
    platform = Platform.open(home)
    infra.apply(platform, admin, confirm=lambda plan: True)
    shutil.copytree(PROJECT, tmp_path / "project")
    service.upsert(platform, admin, f"{tmp_path / 'project'}/pipe.py:basic")
    return platform


def test_promotion_copies_the_snapshot_once_with_provenance(
    team: Platform, admin: Principal
) -> None:
    source = service.get_version(team, admin, "basic@1")

    promoted = promote(team, admin, "basic@1", to="preprod")
    again = promote(team, admin, "basic", to="preprod")

    assert (promoted.pipeline, promoted.version) == ("basic", 1) and again == promoted
    assert promoted.definition == source.definition
    assert promoted.snapshot_digest == source.snapshot_digest
    assert promoted.promoted_from == {
        "environment": "dev",
        "pipeline": "basic",
        "version": 1,
        "definition_digest": source.definition_digest,
        "snapshot_digest": source.snapshot_digest,
    }
    preprod = team.env("preprod")
    assert preprod.artifacts.get_bytes(source.snapshot_digest)  # the bytes live in preprod now
    with preprod.store.read() as s:
        [event] = events.list_events(s, type_="PipelinePromoted")
        [entry] = [e for e in audit_events(s) if e.action == "pipeline.promote"]
    assert event.subject == "basic@1" and event.payload["from"]["environment"] == "dev"
    assert entry.outcome == "ok" and entry.details["target_version"] == 1
    assert len(service.list_executions(team, admin, env="preprod")) == 0
    promote(team, admin, "basic@1", source_env="preprod", to="prod")
    assert (
        service.get_version(team, admin, "basic@1", env="prod").promoted_from["environment"]
        == "preprod"
    )


@pytest.mark.slow
def test_the_promoted_pipeline_runs_in_the_target(team: Platform, admin: Principal) -> None:
    promote(team, admin, "basic@1", to="preprod")
    execution = service.start(team, admin, "basic@1", {"n": "5"}, env="preprod")
    done = service.drive(team, admin, execution.id, env="preprod", parallel=2)
    assert done.status == "succeeded"


def test_promotion_refusals(team: Platform, admin: Principal) -> None:
    with pytest.raises(ValidationError, match="not along the environment order"):
        promote(team, admin, "basic@1", to="prod")
    with pytest.raises(ValidationError, match="not along the environment order"):
        promote(team, admin, "basic@1", to="dev")
    with pytest.raises(NotFoundError, match="environment 'qa' is not declared"):
        promote(team, admin, "basic@1", to="qa")
    with pytest.raises(NotFoundError, match="pipeline basic@7 does not exist in dev"):
        promote(team, admin, "basic@7", to="preprod")
    with pytest.raises(PermissionDeniedError, match="pipeline:promote in preprod"):
        promote(team, ALICE, "basic@1", to="preprod")
    assert service.list_pipelines(team, admin, env="preprod") == []
    with team.env("prod").store.read() as s:
        [denied] = [e for e in audit_events(s) if e.outcome == "denied"]
    assert denied.action == "pipeline.promote" and denied.details["reason"] == "environment order"


def test_a_tampered_snapshot_is_never_promoted(team: Platform, admin: Principal) -> None:
    version = service.get_version(team, admin, "basic@1")
    store = team.env("dev").artifacts
    Path(store._blob_path(version.snapshot_digest)).write_bytes(b"tampered!")
    with pytest.raises(IntegrityError, match="cannot be read back intact"):
        promote(team, admin, "basic@1", to="preprod")
    assert service.list_pipelines(team, admin, env="preprod") == []
    preprod = team.env("preprod").artifacts
    assert not preprod.fs.exists(preprod._blob_path(version.snapshot_digest))


def test_cli(team: Platform, home: Home) -> None:
    done = run_cli(home, "pipeline", "promote", "basic@1", "--to", "preprod")
    assert done.code == 0, done.err
    assert "dev:basic@1 is preprod:basic@1" in done.out
    shown = json.loads(run_cli(home, "pipeline", "show", "basic", "--env", "preprod", "--json").out)
    assert shown["promoted_from"]["environment"] == "dev"
    refused = run_cli(home, "pipeline", "promote", "basic@1", "--to", "prod")
    assert refused.code == 4 and "Promote to preprod first." in refused.err
