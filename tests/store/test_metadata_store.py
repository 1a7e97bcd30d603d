"""The metadata store on every backend (SQLite, and PostgreSQL when configured): the schema and
its migrations, the table-access modules, and the hash-chained audit log under concurrent
appenders, threads and processes."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from lockgate.auth import audit
from lockgate.errors import ConfigError
from lockgate.store import MetadataStore, iam, params, settings
from lockgate.store.engine import dispose_all, engine_for
from lockgate.store.migrate import MIGRATIONS, SCHEMA_HEAD
from support import downgrade_store

TABLES = {"alembic_version", "audit_events", "parameters", "roles", "role_bindings", "settings"}


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


@pytest.fixture
def store(metadata_url: str) -> Iterator[MetadataStore]:
    """A store at the newest schema, its pooled connections closed afterwards."""
    store = MetadataStore(metadata_url)
    store.upgrade()
    yield store
    dispose_all()


# --- schema and migrations ---------------------------------------------------------------------


def test_schema_head_is_the_head_of_the_migration_scripts() -> None:
    scripts = ScriptDirectory(str(MIGRATIONS))
    assert scripts.get_heads() == [SCHEMA_HEAD]
    assert scripts.get_current_head() == SCHEMA_HEAD


def test_upgrade_creates_the_schema(metadata_url: str) -> None:
    store = MetadataStore(metadata_url)
    assert store.exists() is False

    store.upgrade()

    assert store.exists() is True
    assert store.revision() == SCHEMA_HEAD
    with engine_for(metadata_url).connect() as conn:
        assert set(inspect(conn).get_table_names()) >= TABLES


def test_the_migrations_build_exactly_the_orm_tables(metadata_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from lockgate.store.tables import Base

    MetadataStore(metadata_url).upgrade()
    with engine_for(metadata_url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        assert compare_metadata(context, Base.metadata) == []


def test_every_migration_downgrades_and_upgrades_again(metadata_url: str) -> None:
    store = MetadataStore(metadata_url)
    store.upgrade()
    downgrade_store(metadata_url, "base")
    with engine_for(metadata_url).connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    store.upgrade()
    assert store.revision() == SCHEMA_HEAD


def test_upgrading_twice_is_a_no_op(metadata_url: str) -> None:
    store = MetadataStore(metadata_url)
    store.upgrade()
    with store.transaction() as session:
        settings.put_setting(session, "quotas", {"cpu": 4})
        audit.record(session, actor="user:alice", action="test.kept", target="t")

    store.upgrade()

    assert store.revision() == SCHEMA_HEAD
    with store.transaction() as session:
        versions = session.execute(text("SELECT version_num FROM alembic_version")).all()
        assert [v for (v,) in versions] == [SCHEMA_HEAD]
        assert settings.get_setting(session, "quotas") == {"cpu": 4}
        assert audit.count_events(session) == 1
        assert audit.verify(session).ok


def test_exists_on_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "metadata.db"
    store = MetadataStore(f"sqlite:///{path}")

    assert store.exists() is False
    assert not path.exists()
    assert not path.parent.exists()


def test_exists_on_an_empty_sqlite_file_is_false(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    path.touch()
    assert MetadataStore(f"sqlite:///{path}").exists() is False
    dispose_all()


def test_an_unreachable_postgres_server_is_a_config_error() -> None:
    with socket.socket() as sock:  # a port on which nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = MetadataStore(f"postgresql+psycopg://lockgate:hunter2@127.0.0.1:{port}/nope")
    try:
        with pytest.raises(ConfigError) as caught:
            store.exists()
        assert "hunter2" not in str(caught.value)
        assert "***" in str(caught.value)
    finally:
        dispose_all()


# --- roles and bindings ------------------------------------------------------------------------


def test_roles_round_trip_and_replace(store: MetadataStore) -> None:
    with store.transaction() as session:
        iam.put_role(session, iam.Role("viewer", "reads", ("param:read",)))
        iam.put_role(session, iam.Role("admin", "everything", ("param:read", "param:write")))
    with store.transaction() as session:
        assert iam.list_roles(session) == [
            iam.Role("admin", "everything", ("param:read", "param:write")),
            iam.Role("viewer", "reads", ("param:read",)),
        ]
        iam.put_role(session, iam.Role("viewer", "reads more", ("param:read", "audit:read")))
    with store.transaction() as session:
        assert iam.get_role(session, "viewer") == iam.Role(
            "viewer", "reads more", ("param:read", "audit:read")
        )
        assert len(iam.list_roles(session)) == 2
        iam.delete_role(session, "viewer")
        iam.delete_role(session, "never-there")
    with store.transaction() as session:
        assert iam.get_role(session, "viewer") is None
        assert [r.name for r in iam.list_roles(session)] == ["admin"]


def test_bindings(store: MetadataStore) -> None:
    viewer = iam.Role("viewer", "", ("param:read",))
    admin = iam.Role("admin", "", ("param:read", "param:write"))
    with store.transaction() as session:
        iam.put_role(session, viewer)
        iam.put_role(session, admin)
        iam.add_binding(session, "user:bob", "viewer")
        iam.add_binding(session, "user:alice", "admin")
        iam.add_binding(session, "user:alice", "viewer")
    with store.transaction() as session:
        iam.add_binding(session, "user:alice", "admin")  # binding again changes nothing
        iam.add_binding(session, "user:bob", "deleted-role")
    with store.transaction() as session:
        assert iam.list_bindings(session) == [
            ("user:alice", "admin"),
            ("user:alice", "viewer"),
            ("user:bob", "deleted-role"),
            ("user:bob", "viewer"),
        ]
        assert sorted(iam.roles_of(session, "user:alice"), key=lambda r: r.name) == [admin, viewer]
        assert iam.roles_of(session, "user:bob") == [viewer]  # the dangling binding is skipped
        assert iam.roles_of(session, "user:nobody") == []
        iam.delete_binding(session, "user:alice", "viewer")
    with store.transaction() as session:
        assert iam.roles_of(session, "user:alice") == [admin]


# --- parameters --------------------------------------------------------------------------------


def _put(
    session: Session,
    name: str,
    value: str = "v",
    *,
    secure: bool = False,
    description: str = "",
    managed: bool = False,
    at: str = "2026-01-01T00:00:00Z",
    by: str = "user:alice",
) -> int:
    return params.put_parameter(
        session,
        name=name,
        secure=secure,
        value=value,
        description=description,
        managed=managed,
        at=at,
        by=by,
    )


def test_parameter_versions_increment(store: MetadataStore) -> None:
    name = "/lockgate/dev/db/url"
    with store.transaction() as session:
        assert _put(session, name, "one") == 1
    with store.transaction() as session:
        assert _put(session, name, "two") == 2
    with store.transaction() as session:
        version = _put(
            session,
            name,
            "ciphertext",
            secure=True,
            description="the db",
            managed=True,
            at="2026-01-02T00:00:00Z",
            by="service:ci",
        )
        assert version == 3
    with store.transaction() as session:
        assert params.get_parameter(session, name) == params.StoredParameter(
            name, True, "ciphertext", "the db", True, 3, "2026-01-02T00:00:00Z", "service:ci"
        )
        assert params.get_parameter(session, "/lockgate/dev/absent") is None


def test_parameter_prefix_is_literal(store: MetadataStore) -> None:
    names = [
        "/lockgate/dev/a%b/x",
        "/lockgate/dev/a_b/y",
        "/lockgate/dev/axb/z",
        "/lockgate/dev/a%bc/w",
        "/lockgate/dev/ab/v",
        "/lockgate/prod/a_b/y",
    ]
    with store.transaction() as session:
        for name in names:
            _put(session, name)
    with store.transaction() as session:

        def listed(prefix: str) -> list[str]:
            return [p.name for p in params.list_parameters(session, prefix)]

        assert listed("") == sorted(names)
        assert listed("/lockgate/dev/a%b/") == ["/lockgate/dev/a%b/x"]
        assert listed("/lockgate/dev/a%") == ["/lockgate/dev/a%b/x", "/lockgate/dev/a%bc/w"]
        assert listed("/lockgate/dev/a_b") == ["/lockgate/dev/a_b/y"]
        assert listed("/lockgate/dev/a_") == ["/lockgate/dev/a_b/y"]
        assert listed("/lockgate/dev/") == sorted(n for n in names if "/dev/" in n)
        assert listed("/lockgate/test/") == []


def test_parameter_prefix_is_case_sensitive(store: MetadataStore) -> None:
    """SQLite's LIKE ignores case; a prefix listing must not."""
    with store.transaction() as session:
        _put(session, "/lockgate/dev/App/key")
        _put(session, "/lockgate/dev/app/key")
    with store.transaction() as session:
        # The names differ only in case, and both are valid and distinct (the primary key).
        assert params.get_parameter(session, "/lockgate/dev/App/key") is not None
        assert [p.name for p in params.list_parameters(session, "/lockgate/dev/app/")] == [
            "/lockgate/dev/app/key"
        ]


def test_delete_parameter(store: MetadataStore) -> None:
    with store.transaction() as session:
        _put(session, "/lockgate/dev/gone")
    with store.transaction() as session:
        assert params.delete_parameter(session, "/lockgate/dev/gone") is True
    with store.transaction() as session:
        assert params.delete_parameter(session, "/lockgate/dev/gone") is False
        assert params.delete_parameter(session, "/lockgate/dev/never") is False
        assert params.get_parameter(session, "/lockgate/dev/gone") is None
    with store.transaction() as session:  # recreated, it starts again at version 1
        assert _put(session, "/lockgate/dev/gone") == 1


# --- settings ----------------------------------------------------------------------------------


def test_settings_round_trip(store: MetadataStore) -> None:
    policy = {"egress": ["10.0.0.0/8", "pypi.org"], "ingress": {"allow": True, "ports": [443]}}
    with store.transaction() as session:
        assert settings.get_setting(session, "network") is None
        settings.put_setting(session, "network", policy)
        settings.put_setting(session, "quotas", {"cpu": 8, "gpu": 0, "note": "élan ✓"})
    with store.transaction() as session:
        assert settings.get_setting(session, "network") == policy
        assert settings.get_setting(session, "quotas") == {"cpu": 8, "gpu": 0, "note": "élan ✓"}
        settings.put_setting(session, "quotas", {"cpu": 2})
    with store.transaction() as session:
        assert settings.get_setting(session, "quotas") == {"cpu": 2}
        settings.delete_setting(session, "network")
        settings.delete_setting(session, "never-there")
    with store.transaction() as session:
        assert settings.get_setting(session, "network") is None
        assert settings.get_setting(session, "quotas") == {"cpu": 2}


# --- the audit chain ---------------------------------------------------------------------------


def _record_events(store: MetadataStore, n: int) -> None:
    for i in range(n):
        with store.transaction() as session:
            audit.record(
                session,
                actor=f"user:u{i % 2}",
                action="param.put",
                target=f"/lockgate/dev/p{i}",
                outcome="ok" if i % 3 else "denied",
                details={"i": i, "nested": {"k": [i, "x"]}},
            )


def test_audit_chain_records_and_verifies(store: MetadataStore) -> None:
    with store.transaction() as session:
        assert audit.verify(session) == audit.VerifyResult(True, 0)
    _record_events(store, 5)
    with store.transaction() as session:
        assert audit.verify(session) == audit.VerifyResult(True, 5)
        assert audit.count_events(session) == 5
        events = audit.list_events(session)
        assert [e.seq for e in events] == [1, 2, 3, 4, 5]
        assert events[0].prev_hash == audit.GENESIS
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
        assert events[2].details == {"i": 2, "nested": {"k": [2, "x"]}}
        assert [e.seq for e in audit.list_events(session, limit=2)] == [4, 5]
        assert [e.seq for e in audit.list_events(session, actor="user:u1")] == [2, 4]


@pytest.mark.parametrize(
    ("column", "value"),
    [("details", '{"i": 2, "nested": {"k": [2, "y"]}}'), ("actor", "user:mallory")],
)
def test_audit_tampering_is_detected(store: MetadataStore, column: str, value: str) -> None:
    _record_events(store, 5)
    with store.transaction() as session:
        session.execute(
            text(f"UPDATE audit_events SET {column} = :value WHERE seq = 3"), {"value": value}
        )
    with store.transaction() as session:
        result = audit.verify(session)
    assert result.ok is False
    assert result.broken_at == 3
    assert result.events == 2
    assert result.reason is not None and "altered" in result.reason


def test_audit_deleting_a_middle_event_is_detected(store: MetadataStore) -> None:
    _record_events(store, 5)
    with store.transaction() as session:
        session.execute(text("DELETE FROM audit_events WHERE seq = 3"))
    with store.transaction() as session:
        result = audit.verify(session)
    assert result.ok is False
    assert result.broken_at == 3
    assert result.reason is not None and "missing" in result.reason


def test_audit_refuses_secret_details(store: MetadataStore) -> None:
    with pytest.raises(ValueError, match="value"), store.transaction() as session:
        audit.record(
            session, actor="user:alice", action="param.put", target="t", details={"value": "s3cr3t"}
        )
    with store.transaction() as session:
        assert audit.count_events(session) == 0


def test_audit_event_rolls_back_with_its_transaction(store: MetadataStore) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.transaction() as session:
        audit.record(session, actor="user:alice", action="param.put", target="/lockgate/dev/x")
        _put(session, "/lockgate/dev/x")
        raise Boom
    with store.transaction() as session:
        assert audit.count_events(session) == 0
        assert params.get_parameter(session, "/lockgate/dev/x") is None
    with store.transaction() as session:
        assert audit.record(session, actor="user:alice", action="a", target="t").seq == 1


# --- concurrent appenders ----------------------------------------------------------------------

THREADS = 4
EVENTS_EACH = 20

# Run in a child process: THREADS threads append EVENTS_EACH events each, once the parent says go.
_APPENDER = textwrap.dedent(
    """
    import sys, threading
    from lockgate.auth import audit
    from lockgate.store import MetadataStore
    from lockgate.store.engine import dispose_all

    url, tag, threads, each = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = MetadataStore(url)
    errors = []

    def append(n):
        try:
            for i in range(each):
                with store.transaction() as session:
                    audit.record(
                        session, actor=f"service:{tag}-{n}", action="test.append",
                        target=str(i), details={"i": i},
                    )
        except BaseException as exc:
            errors.append(exc)

    print("ready", flush=True)
    sys.stdin.readline()
    workers = [threading.Thread(target=append, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    dispose_all()
    if errors:
        raise errors[0]
    """
)


def _run_threads(target: Callable[[int], None], count: int) -> None:
    """Run ``target(n)`` for n in 0..count-1 in threads started together; re-raise any error."""
    barrier = threading.Barrier(count)

    def run(n: int) -> None:
        barrier.wait(timeout=30)
        target(n)

    with ThreadPoolExecutor(max_workers=count) as pool:
        for future in [pool.submit(run, n) for n in range(count)]:
            future.result(timeout=120)


def _check_chain(store: MetadataStore, writers: list[str]) -> None:
    total = len(writers) * EVENTS_EACH
    with store.transaction() as session:
        assert audit.count_events(session) == total
        events = audit.list_events(session, limit=total + 10)
        assert audit.verify(session) == audit.VerifyResult(True, total)
    assert [e.seq for e in events] == list(range(1, total + 1))
    assert len({e.id for e in events}) == total
    for writer in writers:  # each writer's events, in the order it wrote them
        mine = [e.details["i"] for e in events if e.actor == writer]
        assert mine == list(range(EVENTS_EACH)), writer


def test_concurrent_appends_from_threads(store: MetadataStore) -> None:
    def append(n: int) -> None:
        for i in range(EVENTS_EACH):
            with store.transaction() as session:
                audit.record(
                    session,
                    actor=f"service:t{n}",
                    action="test.append",
                    target=str(i),
                    details={"i": i},
                )

    _run_threads(append, THREADS)
    _check_chain(store, [f"service:t{n}" for n in range(THREADS)])


def test_concurrent_appends_from_processes(store: MetadataStore) -> None:
    tags = ["p0", "p1"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _APPENDER, store.url, tag, str(THREADS), str(EVENTS_EACH)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in tags
    ]
    try:
        for proc in procs:  # both have imported everything: start them together
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                pytest.fail(f"an appender did not start: {proc.communicate(timeout=30)[1]}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    _check_chain(store, [f"service:{tag}-{n}" for tag in tags for n in range(THREADS)])
