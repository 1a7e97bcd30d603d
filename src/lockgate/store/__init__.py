"""The metadata store of an environment: engine, sessions, schema and table access."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.exc import OperationalError

from lockgate.backends import redact
from lockgate.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class MetadataStore:
    """One environment's metadata store, reached through its SQLAlchemy URL."""

    url: str

    @property
    def display_url(self) -> str:
        return redact(self.url)

    def exists(self) -> bool:
        """Whether the store holds a Lockgate schema (without creating anything)."""
        from lockgate.store.engine import sqlite_path

        path = sqlite_path(self.url)
        if path is not None and not path.is_file():
            return False
        return self.revision() is not None

    def revision(self) -> str | None:
        from lockgate.store.migrate import current_revision

        try:
            return current_revision(self.url)
        except OperationalError as exc:
            raise ConfigError(
                f"cannot reach the metadata store {self.display_url}: {exc.orig}",
                hint="Check the store URL in platform.toml and that the database is running.",
            ) from exc

    def upgrade(self) -> None:
        from lockgate.store.migrate import upgrade

        upgrade(self.url)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        from sqlalchemy.orm import Session

        from lockgate.store.engine import engine_for

        with Session(engine_for(self.url), expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading only: on SQLite it takes no write lock (a deferred BEGIN).

        For frequent checks (a worker polling for work); anything that writes uses
        :meth:`transaction`.
        """
        from sqlalchemy.orm import Session

        from lockgate.store.engine import engine_for

        engine = engine_for(self.url).execution_options(lockgate_read_only=True)
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
