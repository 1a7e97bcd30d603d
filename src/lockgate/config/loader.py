"""Reading ``platform.toml``, with errors that name the file, the key or line, and the fix."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.errors import ConfigError, NotInitialisedError

if TYPE_CHECKING:
    from lockgate.config.spec import PlatformSpec


def load_spec(path: Path) -> PlatformSpec:
    """Parse and validate ``path``; raise one :class:`ConfigError` listing every problem."""
    if not path.is_file():
        raise NotInitialisedError(
            f"no platform home at {path.parent} ({path.name} is missing).",
            hint="Run `lockgate init` (or pass --home / set LOCKGATE_HOME to an existing home).",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}.", hint="Check the file.") from exc
    return parse_spec(text, str(path))


def parse_spec(text: str, source: str) -> PlatformSpec:
    """Validate the TOML ``text`` (read from ``source``) as a :class:`PlatformSpec`."""
    from pydantic import ValidationError as PydanticError

    from lockgate.config.spec import PlatformSpec

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{source}: TOML syntax error: {exc}.",
            hint="Fix that line; see https://toml.io for the syntax.",
        ) from exc
    try:
        return PlatformSpec.model_validate(data)
    except PydanticError as exc:
        problems = [_describe(err, data) for err in exc.errors(include_url=False)]
        raise ConfigError(
            f"{source} is invalid:\n" + "\n".join(f"  - {p}" for p in problems),
            hint=f"Edit {source} to fix the keys above; nothing was changed.",
        ) from exc


def _describe(err: Any, data: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in err["loc"] if not str(part).startswith("function-"))
    if err["type"] == "extra_forbidden":
        parent, _, key = loc.rpartition(".")
        where = f" in [{parent}]" if parent else ""
        return f"unknown key {key!r}{where}; remove it or check its spelling"
    if err["type"] == "missing":
        return f"{loc}: missing; add it"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {message}" if loc else message
