"""Infrastructure state: numbered, immutable versions, each written atomically.

``state/versions/00000007.json`` records which resources Lockgate manages and the attributes it
last applied. The newest version is the current state. A version is written to a temporary file,
flushed to disk and renamed into place, so a crash leaves either the old or the new version,
never half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockgate.errors import IntegrityError

VERSION_DIGITS = 8


@dataclass(frozen=True)
class StateVersion:
    version: int
    created_at: str
    created_by: str
    operation: str
    outcome: str
    changes: list[dict[str, str]] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "operation": self.operation,
            "outcome": self.outcome,
            "changes": self.changes,
            "resources": self.resources,
        }


@dataclass(frozen=True)
class StateStore:
    folder: Path

    @property
    def versions_dir(self) -> Path:
        return self.folder / "versions"

    def ensure(self) -> None:
        self.versions_dir.mkdir(parents=True, exist_ok=True)

    def version_numbers(self) -> list[int]:
        if not self.versions_dir.is_dir():
            return []
        return sorted(int(p.stem) for p in self.versions_dir.glob("*.json") if p.stem.isdigit())

    def current(self) -> StateVersion | None:
        numbers = self.version_numbers()
        return self.read(numbers[-1]) if numbers else None

    def read(self, number: int) -> StateVersion:
        path = self.versions_dir / f"{number:0{VERSION_DIGITS}d}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return StateVersion(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise IntegrityError(
                f"state version {path} cannot be read: {exc}.",
                hint="Restore the file, or remove it to fall back to the version before it.",
            ) from exc

    def history(self) -> list[StateVersion]:
        return [self.read(n) for n in self.version_numbers()]

    def write(self, state: StateVersion) -> None:
        """Record ``state`` as a new version (its number must be the next one)."""
        self.ensure()
        path = self.versions_dir / f"{state.version:0{VERSION_DIGITS}d}.json"
        if path.exists():
            raise IntegrityError(f"state version {state.version} already exists at {path}.")
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(state.to_dict(), handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self.versions_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
