"""The platform home: where it is and how it is laid out."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lockgate.config.names import check_name
from lockgate.errors import ValidationError

PLATFORM_FILE = "platform.toml"


@dataclass(frozen=True)
class Home:
    """The folders and files of one platform home (see DESIGN.md §3)."""

    root: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> Home:
        """The home from the ``--home`` flag, else ``$LOCKGATE_HOME``, else ``~/.lockgate``."""
        raw = home or os.environ.get("LOCKGATE_HOME") or Path.home() / ".lockgate"
        return cls(Path(raw).expanduser().absolute())

    @property
    def platform_file(self) -> Path:
        return self.root / PLATFORM_FILE

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    def env_dir(self, env: str) -> Path:
        return self.inside(self.root / "envs" / check_name(env, "environment"))

    def keys_dir(self, env: str) -> Path:
        return self.inside(self.root / "keys" / check_name(env, "environment"))

    def inside(self, path: str | os.PathLike[str]) -> Path:
        """``path`` resolved, refused when it would escape the home."""
        resolved = Path(os.path.normpath(self.root / path))
        if resolved != self.root and self.root not in resolved.parents:
            raise ValidationError(
                f"path {str(path)!r} is outside the platform home {self.root}.",
                hint="Use a path inside the home, without '..' components.",
            )
        return resolved

    def is_initialised(self) -> bool:
        return self.platform_file.is_file()
