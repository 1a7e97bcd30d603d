"""Shared fixtures: real homes on disk, real SQLite and (when configured) PostgreSQL databases,
and the real ``lockgate`` command in a subprocess."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockgate.auth.principal import Principal, local_principal
from lockgate.config.home import Home
from lockgate.infra.bootstrap import init
from lockgate.platform import Platform
from lockgate.store.engine import dispose_all

POSTGRES_ENV = "LOCKGATE_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own ~/.lockgate."""
    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path / "default-home"))


@pytest.fixture(scope="session", autouse=True)
def _dispose_engines() -> Iterator[None]:
    yield
    dispose_all()


@pytest.fixture
def admin() -> Principal:
    """The OS user running the tests: ``init`` binds it as platform-admin."""
    return local_principal()


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


@pytest.fixture
def platform(home: Home, admin: Principal) -> Platform:
    """A freshly initialised home with dev, preprod and prod on SQLite."""
    init(home, admin, org="acme")
    return Platform.open(home)


def _postgres_database() -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(os.environ[POSTGRES_ENV])
    name = f"lockgate_test_{uuid.uuid4().hex[:12]}"
    admin_engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_all()
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A metadata-store URL for each backend that claims the feature.

    PostgreSQL runs when ``LOCKGATE_TEST_POSTGRES_URL`` names a server (``.ci/run`` starts one);
    each test gets a database of its own, dropped afterwards.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'metadata.db'}"
        return
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} is not set")
    yield from _postgres_database()
