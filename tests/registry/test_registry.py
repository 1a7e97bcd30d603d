"""The model registry: the approval state machine, the policy, metric gates, events, cards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockgate.auth.audit import list_events as audit_events
from lockgate.auth.principal import Principal
from lockgate.config.home import Home
from lockgate.errors import (
    ConflictError,
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from lockgate.infra import service as infra
from lockgate.platform import Platform
from lockgate.registry import service as registry
from lockgate.store import events
from support import run_cli

LEAD = Principal("user:lena")
ALICE = Principal("user:alice")

TEAM = """
[[bindings]]
principal = "user:lena"
role = "lead-data-scientist"
environments = ["dev", "preprod", "prod"]

[[bindings]]
principal = "user:alice"
role = "data-scientist"
environments = ["dev"]

[registry.gates.abalone]
mse = "<= 6.0"
"""


@pytest.fixture
def team(platform: Platform, home: Home, admin: Principal) -> Platform:
    home.platform_file.write_text(home.platform_file.read_text() + TEAM)
    platform = Platform.open(home)
    infra.apply(platform, admin, confirm=lambda plan: True)
    return platform


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.joblib").write_bytes(b"not really a model, but bytes")
    return folder


def test_approval_state_machine_with_events(
    team: Platform, admin: Principal, model_dir: Path
) -> None:
    v1 = registry.register(team, ALICE, model_dir, "abalone", metrics={"mse": 4.2})
    assert (v1.ref, v1.status, v1.registered_by) == (
        "abalone/1",
        "PendingManualApproval",
        "user:alice",
    )
    assert registry.register(team, ALICE, model_dir, "abalone", metrics={"mse": 4.0}).version == 2
    approved = registry.set_status(team, LEAD, "abalone/1", registry.APPROVED, comment="good")
    assert (approved.status, approved.status_by, approved.status_comment) == (
        "Approved",
        "user:lena",
        "good",
    )
    with pytest.raises(ConflictError, match="abalone/1 is Approved; it cannot become Approved"):
        registry.set_status(team, LEAD, "abalone/1", registry.APPROVED)
    assert registry.set_status(team, LEAD, "abalone/1", registry.REJECTED).status == "Rejected"
    with pytest.raises(ConflictError, match="register a new version"):
        registry.set_status(team, LEAD, "abalone/1", registry.APPROVED)
    with team.env("dev").store.transaction() as s:
        found = [(e.type, e.subject, e.payload.get("to")) for e in events.list_events(s)]
    assert found == [
        ("ModelVersionRegistered", "abalone/1", None),
        ("ModelVersionRegistered", "abalone/2", None),
        ("ModelVersionApprovalChanged", "abalone/1", "Approved"),
        ("ModelVersionApprovalChanged", "abalone/1", "Rejected"),
    ]


def test_separation_of_duties_and_roles(
    team: Platform, home: Home, admin: Principal, model_dir: Path
) -> None:
    registry.register(team, LEAD, model_dir, "abalone", metrics={"mse": 4.2})
    with pytest.raises(PermissionDeniedError, match="separation of duties"):
        registry.set_status(team, LEAD, "abalone/1", registry.APPROVED)
    with pytest.raises(PermissionDeniedError, match="model:approve in dev"):
        registry.set_status(team, ALICE, "abalone/1", registry.APPROVED)
    with team.env("dev").store.transaction() as s:
        denied = [
            (e.actor, e.action, e.details.get("reason"))
            for e in audit_events(s)
            if e.outcome == "denied"
        ]
    assert ("user:lena", "model.approve", "separation of duties") in denied
    assert ("user:alice", "model:approve", None) in denied
    assert registry.get(team, admin, "abalone/1").status == "PendingManualApproval"  # unchanged

    text = home.platform_file.read_text()
    assert "allow_self_approval = false" in text
    home.platform_file.write_text(
        text.replace("allow_self_approval = false", "allow_self_approval = true")
    )
    relaxed = Platform.open(home)
    with pytest.raises(PermissionDeniedError, match="separation of duties"):  # edited, not applied
        registry.set_status(relaxed, LEAD, "abalone/1", registry.APPROVED)
    changes = infra.plan(relaxed, admin).changes
    assert {c.address for c in changes} == {
        f"{e}.registry_policy" for e in ("dev", "preprod", "prod")
    }
    assert changes[0].diff() == [("allow_self_approval", False, True)]
    infra.apply(relaxed, admin, confirm=lambda plan: True)
    assert registry.set_status(relaxed, LEAD, "abalone/1", registry.APPROVED).status == "Approved"


def test_metric_gate_needs_an_audited_override(team: Platform, model_dir: Path) -> None:
    registry.register(team, ALICE, model_dir, "abalone", metrics={"mse": 7.5})
    registry.register(team, ALICE, model_dir, "abalone", metrics={"mae": 1.0})
    with pytest.raises(ConflictError, match=r"mse = 7.5 fails mse <= 6"):
        registry.set_status(team, LEAD, "abalone/1", registry.APPROVED)
    with pytest.raises(ConflictError, match="mse is missing"):
        registry.set_status(team, LEAD, "abalone/2", registry.APPROVED)
    with pytest.raises(ConflictError, match="--override-gate"):
        registry.set_status(team, LEAD, "abalone/1", registry.APPROVED, override_gate="   ")
    forced = registry.set_status(
        team, LEAD, "abalone/1", registry.APPROVED, override_gate="seasonal data; accepted by QA"
    )
    assert forced.status == "Approved" and forced.gate_override == "seasonal data; accepted by QA"
    with team.env("dev").store.transaction() as s:
        [event] = [e for e in audit_events(s) if e.action == "model.approve" and e.outcome == "ok"]
    assert event.details["reason"] == "seasonal data; accepted by QA"
    assert event.details["gate_overridden"] == ["mse = 7.5 fails mse <= 6"]
    assert (
        registry.set_status(team, LEAD, "abalone/2", registry.REJECTED).status == "Rejected"
    )  # no gate on reject


def test_outbox_is_atomic_with_the_change(team: Platform) -> None:
    env = team.env("dev")
    with pytest.raises(RuntimeError), env.store.transaction() as s:
        registry.register_version(
            s,
            group="atomic",
            model_digest="sha256:" + "0" * 64,
            metrics={},
            lineage={},
            by="user:x",
        )
        raise RuntimeError("the change fails after its event was written")
    with env.store.transaction() as s:
        assert events.list_events(s) == []
    assert registry.groups(team, LEAD) == []


def test_model_card(team: Platform, model_dir: Path) -> None:
    registry.register(team, ALICE, model_dir, "abalone", metrics={"mse": 4.25})
    card = registry.get(team, ALICE, "abalone/1").card
    assert card["evaluation_summary"] == "mse=4.25"
    edited = registry.edit_card(
        team, ALICE, "abalone/1", {"intended_use": "age estimates", "limitations": "adults only"}
    )
    assert (
        edited.card["intended_use"] == "age estimates"
        and edited.card["evaluation_summary"] == "mse=4.25"
    )
    with pytest.raises(ValidationError, match="unknown model card field"):
        registry.edit_card(team, ALICE, "abalone/1", {"colour": "blue"})


@pytest.mark.parametrize(
    ("ref", "error", "text"),
    [
        ("abalone", ValidationError, "is not GROUP/VERSION"),
        ("abalone/x", ValidationError, "is not GROUP/VERSION"),
        ("Bad_Group/1", ValidationError, "not a valid name"),
        ("abalone/9", NotFoundError, "abalone/9 does not exist in dev"),
    ],
)
def test_bad_references(team: Platform, model_dir: Path, ref: str, error: type, text: str) -> None:
    registry.register(team, ALICE, model_dir, "abalone", metrics={"mse": 1.0})
    with pytest.raises(error, match=text):  # type: ignore[call-overload]
        registry.set_status(team, LEAD, ref, registry.APPROVED)


def test_register_refuses_bad_input(team: Platform, tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(ValidationError, match="not a folder holding a model"):
        registry.register(team, ALICE, tmp_path / "missing", "abalone")
    with pytest.raises(ValidationError, match="must be a number"):
        registry.register(team, ALICE, model_dir, "abalone", metrics={"mse": "low"})
    with pytest.raises(PermissionDeniedError, match="model:write in prod"):
        registry.register(team, ALICE, model_dir, "abalone", env="prod")


def test_cli(team: Platform, home: Home, model_dir: Path) -> None:
    registered = run_cli(
        home, "model", "register", str(model_dir), "--group", "churn", "--metrics", '{"auc": 0.91}'
    )
    assert registered.code == 0 and "Registered churn/1 (PendingManualApproval)" in registered.out
    own = run_cli(home, "model", "approve", "churn/1")  # the OS user registered it
    assert own.code == PermissionDeniedError.exit_code and "separation of duties" in own.err
    shown = json.loads(run_cli(home, "model", "show", "churn/1", "--json").out)
    assert shown["metrics"] == {"auc": 0.91} and shown["model_digest"].startswith("sha256:")
    assert run_cli(home, "model", "card", "churn/1", "--limitations", "EU customers only").code == 0
    assert "EU customers only" in run_cli(home, "model", "card", "churn/1").out
    bad = run_cli(
        home, "model", "register", str(model_dir), "--group", "churn", "--metrics", "{nope"
    )
    assert bad.code == ValidationError.exit_code and "--metrics is not JSON" in bad.err
    listed = json.loads(run_cli(home, "events", "list", "--json").out)
    assert [e["type"] for e in listed] == ["ModelVersionRegistered", "ModelCardChanged"]


def _approved(team: Platform, model_dir: Path) -> None:
    registry.register(team, ALICE, model_dir, "abalone", metrics={"mse": 4.2})
    registry.set_status(team, LEAD, "abalone/1", registry.APPROVED)


def test_promotion_copies_verified_bytes_once(
    team: Platform, admin: Principal, model_dir: Path
) -> None:
    _approved(team, model_dir)
    source = registry.get(team, LEAD, "abalone/1")
    promoted = registry.promote(team, LEAD, "abalone/1", to="preprod")
    assert (promoted.ref, promoted.status, promoted.model_digest) == (
        "abalone/1",
        "Approved",
        source.model_digest,
    )
    assert promoted.lineage["promoted_from"] == {
        "environment": "dev",
        "group": "abalone",
        "version": 1,
        "model_digest": source.model_digest,
        "approved_by": "user:lena",
    }
    target = team.env("preprod").artifacts
    copy = target.get_tree(promoted.model_digest, model_dir.parent / "copy")
    assert (copy / "model.joblib").read_bytes() == (model_dir / "model.joblib").read_bytes()
    again = registry.promote(team, LEAD, "abalone/1", to="preprod")
    assert again.version == promoted.version  # idempotent
    assert len(registry.versions(team, LEAD, "abalone", env="preprod")) == 1
    onwards = registry.promote(team, LEAD, "abalone/1", to="prod", source_env="preprod")
    assert onwards.lineage["promoted_from"]["environment"] == "preprod"
    with team.env("preprod").store.transaction() as s:
        assert [e.type for e in events.list_events(s)] == [
            "ModelVersionRegistered",
            "ModelVersionPromoted",
        ]


def test_promotion_refusals(team: Platform, admin: Principal, model_dir: Path) -> None:
    registry.register(team, ALICE, model_dir, "abalone", metrics={"mse": 4.2})
    with pytest.raises(ConflictError, match="only an approved version is promoted"):
        registry.promote(team, LEAD, "abalone/1", to="preprod")
    registry.set_status(team, LEAD, "abalone/1", registry.APPROVED)
    with pytest.raises(ValidationError, match="not along the environment order"):
        registry.promote(team, LEAD, "abalone/1", to="prod")
    with pytest.raises(ValidationError, match="not along the environment order"):
        registry.promote(team, LEAD, "abalone/1", to="dev")
    with pytest.raises(NotFoundError, match="environment 'qa' is not declared"):
        registry.promote(team, LEAD, "abalone/1", to="qa")
    with pytest.raises(PermissionDeniedError, match="model:approve in preprod"):
        registry.promote(team, ALICE, "abalone/1", to="preprod")
    assert registry.groups(team, LEAD, env="preprod") == []  # nothing was copied


def test_a_tampered_artifact_is_never_promoted(team: Platform, model_dir: Path) -> None:
    _approved(team, model_dir)
    version = registry.get(team, LEAD, "abalone/1")
    store = team.env("dev").artifacts
    manifest = json.loads(store.get_bytes(version.model_digest))
    blob = Path(store._blob_path(manifest[0]["digest"]))
    blob.write_bytes(b"tampered!")
    with pytest.raises(IntegrityError, match="cannot be read back intact"):
        registry.promote(team, LEAD, "abalone/1", to="preprod")
    assert registry.groups(team, LEAD, env="preprod") == []
    with team.env("preprod").store.transaction() as s:
        [denied] = [e for e in audit_events(s) if e.outcome == "denied"]
    assert denied.action == "model.promote" and denied.details["reason"] == "IntegrityError"
