"""Schema migrations with Alembic, run in-process on Lockgate's own engine."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from lockgate.backends import redact
from lockgate.errors import ConfigError
from lockgate.store.engine import engine_for

# The newest migration; tests check it matches the scripts, so status need not load Alembic.
SCHEMA_HEAD = "0009"
MIGRATIONS = Path(__file__).with_name("migrations")


def upgrade(url: str) -> None:
    """Bring the store at ``url`` to the newest schema (creating the database file if needed)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine_for(url).begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise ConfigError(
            f"cannot migrate the metadata store {redact(url)}: {exc.__class__.__name__}: "
            f"{str(exc.orig if hasattr(exc, 'orig') else exc).strip()}",
            hint="Check the store URL in platform.toml and that the database is reachable.",
        ) from exc


def current_revision(url: str) -> str | None:
    """The schema revision of the store at ``url``; None when it has no schema yet."""
    with engine_for(url).connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
