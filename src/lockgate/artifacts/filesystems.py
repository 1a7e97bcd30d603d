"""fsspec filesystems for the artifact-store URL schemes (see ``lockgate.backends``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from lockgate.errors import ConfigError


def build_local_fs(url: str) -> tuple[Any, str]:
    from fsspec.implementations.local import LocalFileSystem

    path = urlsplit(url).path if url.startswith("file://") else url
    return LocalFileSystem(), path.rstrip("/") or "/"


def build_s3_fs(url: str) -> tuple[Any, str]:
    try:
        import s3fs  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ConfigError(
            "an s3:// artifact store needs the S3 filesystem.",
            hint="Install it with: pip install 'lockgate[s3]'",
        ) from exc
    parts = urlsplit(url)
    return s3fs.S3FileSystem(), f"{parts.netloc}{parts.path}".rstrip("/")
