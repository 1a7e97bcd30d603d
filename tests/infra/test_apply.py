"""infra plan / apply / drift / destroy on real stores and folders."""

from __future__ import annotations

import sqlite3

import pytest

from lockgate.auth.principal import Principal
from lockgate.config.home import Home
from lockgate.errors import AbortedError, ConflictError
from lockgate.infra import service
from lockgate.platform import Platform
from lockgate.store import settings
from lockgate.store.migrate import SCHEMA_HEAD
from support import downgrade_store


def _apply(platform: Platform, admin: Principal, **kwargs) -> service.ApplyResult:  # type: ignore[no-untyped-def]
    return service.apply(platform, admin, confirm=lambda plan: True, **kwargs)


def _reload(home: Home) -> Platform:
    return Platform.open(home)


def test_plan_then_apply_then_nothing_to_do(platform: Platform, admin: Principal) -> None:
    plan = service.plan(platform, admin)
    assert plan.counts() == {"create": 18, "update": 0, "delete": 0}
    kinds = {c.resource.kind for c in plan.changes}
    assert kinds == {"parameter", "network_policy", "quotas", "registry_policy", "bucket"}
    result = _apply(platform, admin)
    assert len(result.applied) == 18
    assert result.state is not None and result.state.version == 2
    assert not service.plan(platform, admin).has_changes
    assert platform.env("prod").artifacts.exists("models")
    with platform.env("dev").store.transaction() as session:
        net = settings.get_setting(session, "network_policy")
    assert net == {
        "bind_host": "127.0.0.1",
        "port_range": [20000, 20999],
        "allowed_clients": ["127.0.0.0/8", "::1/128"],
        "max_requests_per_s": None,
    }
    again = _apply(platform, admin)
    assert again.applied == [] and again.state is None  # no new state version for nothing


def test_declined_confirmation_changes_nothing(platform: Platform, admin: Principal) -> None:
    with pytest.raises(AbortedError, match="nothing was changed"):
        service.apply(platform, admin, confirm=lambda plan: False)
    assert service.plan(platform, admin).counts()["create"] == 18
    assert service.state_store(platform).version_numbers() == [1]
    assert service.current_lock(platform) is None


def test_deleted_folder_is_drift_and_apply_repairs_it(
    platform: Platform, admin: Principal, home: Home
) -> None:
    _apply(platform, admin)
    platform.env("preprod").artifacts.remove("data")
    plan = service.plan(platform, admin)
    assert [(c.action, c.address, c.drift) for c in plan.changes] == [
        ("create", 'preprod.bucket["data"]', True)
    ]
    _apply(platform, admin)
    assert platform.env("preprod").artifacts.exists("data")
    assert not service.plan(platform, admin).has_changes


def test_parameter_changed_behind_lockgates_back(
    platform: Platform, admin: Principal, home: Home
) -> None:
    _apply(platform, admin)
    db = home.root / "envs" / "dev" / "metadata.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE parameters SET value = 'file:///tmp/evil' WHERE name = '/lockgate/dev/data/bucket'"
        )
    plan = service.plan(platform, admin)
    [change] = plan.changes
    assert change.action == "update" and change.drift
    assert change.diff() == [
        ("value", "file:///tmp/evil", f"file://{home.root}/envs/dev/artifacts/data")
    ]
    _apply(platform, admin)
    assert not service.plan(platform, admin).has_changes


def test_deleted_metadata_store_is_recreated(
    platform: Platform, admin: Principal, home: Home
) -> None:
    _apply(platform, admin)
    for suffix in ("", "-wal", "-shm"):
        (home.root / "envs" / "prod" / f"metadata.db{suffix}").unlink(missing_ok=True)
    from lockgate.store.engine import dispose_all

    dispose_all()
    plan = service.plan(platform, admin)
    assert {c.resource.env for c in plan.changes} == {"prod"}
    assert "prod.metadata_store" in [c.address for c in plan.changes]
    _apply(platform, admin)
    assert not service.plan(platform, admin).has_changes


def test_edits_to_platform_toml_become_updates_and_deletes(
    platform: Platform, admin: Principal, home: Home
) -> None:
    _apply(platform, admin)
    text = home.platform_file.read_text()
    text = text.replace("max_endpoints = 10", "max_endpoints = 3", 1)
    text = text.replace(
        'buckets = ["data", "models"]', 'buckets = ["data", "models", "features"]', 1
    )
    text = text.replace(
        '[parameters."/lockgate/prod/data/bucket"]', '[parameters."/lockgate/prod/data/source"]'
    )
    home.platform_file.write_text(text)
    platform = _reload(home)
    plan = service.plan(platform, admin)
    summary = sorted((c.action, c.address) for c in plan.changes)
    assert summary == [
        ("create", 'dev.bucket["features"]'),
        ("create", 'prod.parameter["/lockgate/prod/data/source"]'),
        ("delete", 'prod.parameter["/lockgate/prod/data/bucket"]'),
        ("update", "dev.quotas"),
    ]
    quotas = next(c for c in plan.changes if c.address == "dev.quotas")
    assert quotas.diff() == [("max_endpoints", 10, 3)]
    _apply(platform, admin)
    assert not service.plan(platform, admin).has_changes
    history = service.history(platform, admin)
    assert [s.version for s in history] == [1, 2, 3]
    assert history[-1].changes[-1] == {
        "action": "delete",
        "address": 'prod.parameter["/lockgate/prod/data/bucket"]',
    }


def test_destroy_keeps_stores_and_refuses_buckets_with_files(
    platform: Platform, admin: Principal
) -> None:
    _apply(platform, admin)
    models = platform.env("prod").artifacts
    models.ensure("models", "fraud")
    models.fs.pipe(models.path("models", "fraud", "model.pkl"), b"weights")
    with pytest.raises(ConflictError, match=r'prod\.bucket\["models"\] holds 1 file'):
        _apply(platform, admin, destroy=True)
    assert models.exists("models") and platform.env("dev").artifacts.exists(
        "data"
    )  # nothing changed
    plan = service.plan(platform, admin, destroy=True)
    assert {c.action for c in plan.changes} == {"delete"}
    assert not any(
        c.resource.kind in {"metadata_store", "keys", "role", "binding"} for c in plan.changes
    )
    _apply(platform, admin, destroy=True, force=True)
    assert not models.exists("models")
    assert platform.env("prod").store.exists() and models.exists()
    assert service.plan(platform, admin).counts()["create"] == 18


def test_apply_failure_records_what_was_done(
    platform: Platform, admin: Principal, home: Home
) -> None:
    _apply(platform, admin)
    text = (
        home.platform_file.read_text()
        + '\n[parameters."/lockgate/dev/api/token"]\nsecure = true\nvalue_env = "LG_TEST_TOKEN"\n'
    )
    home.platform_file.write_text(text)
    platform = _reload(home)
    plan = service.plan(platform, admin)
    assert not plan.has_changes
    assert any("$LG_TEST_TOKEN" in w for w in plan.warnings)


def test_an_old_schema_is_upgraded_by_apply(
    platform: Platform, admin: Principal, home: Home
) -> None:
    """A home made before pipelines existed (schema 0001) plans an update and apply upgrades it."""
    from lockgate.errors import NotInitialisedError
    from lockgate.pipelines import service as pipelines

    _apply(platform, admin)
    db = home.root / "envs" / "dev" / "metadata.db"
    downgrade_store(f"sqlite:///{db}", "0001")
    with pytest.raises(NotInitialisedError, match="Run `lockgate infra apply`"):
        pipelines.list_pipelines(platform, admin)
    [change] = service.plan(platform, admin).changes
    assert change.address == "dev.metadata_store" and change.diff() == [
        ("schema", "0001", SCHEMA_HEAD)
    ]
    _apply(platform, admin)
    assert pipelines.list_pipelines(platform, admin) == []
