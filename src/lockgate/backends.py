"""Backends chosen by URL scheme: the one small factory (DESIGN.md §2).

Each table maps a URL scheme to the dotted path of a builder, imported only when used, so that
optional extras (``lockgate[postgres]``, ``lockgate[s3]``) stay optional and nothing heavy is
imported to validate a URL.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from lockgate.errors import ConfigError


def metadata_backends() -> dict[str, str]:
    """URL scheme → builder of a SQLAlchemy engine for the metadata store."""
    return {
        "sqlite": "lockgate.store.engine:build_sqlite_engine",
        "postgresql": "lockgate.store.engine:build_postgres_engine",
        "postgresql+psycopg": "lockgate.store.engine:build_postgres_engine",
    }


def artifact_backends() -> dict[str, str]:
    """URL scheme → builder of an fsspec filesystem for the artifact store."""
    return {
        "file": "lockgate.artifacts.filesystems:build_local_fs",
        "s3": "lockgate.artifacts.filesystems:build_s3_fs",
    }


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme


def check_url(url: str, table: dict[str, str], what: str) -> str:
    """Return ``url`` when its scheme is known, else a :class:`ConfigError` listing the valid ones."""
    scheme = scheme_of(url)
    if scheme not in table:
        valid = ", ".join(f"{s}://" for s in table)
        raise ConfigError(
            f"{what} URL {redact(url)!r} has an unknown scheme {scheme!r}.",
            hint=f"Use one of: {valid}",
        )
    return url


def build(url: str, table: dict[str, str], what: str, **options: Any) -> Any:
    """Build the backend object for ``url`` with the builder its scheme names."""
    module_name, _, func_name = table[scheme_of(check_url(url, table, what))].partition(":")
    builder = getattr(importlib.import_module(module_name), func_name)
    return builder(url, **options)


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print and log)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
