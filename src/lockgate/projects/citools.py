"""The pieces a CI run writes with: its log (secrets masked) and the failure of a step."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from lockgate.config.home import Home

MASK = "***"


class StepFailed(Exception):
    """A CI step did not pass; the message says which and why."""


def log_path(home: Home, run_id: str) -> Path:
    return home.run_dir / "ci" / f"{run_id}.log"


class CiLog:
    """A run's output: appended to a file as it happens, every secret value masked."""

    def __init__(
        self,
        path: Path,
        *,
        secrets: list[str] | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets or [] if len(s) >= 4}, key=len, reverse=True)
        self._echo = echo
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def line(self, text: str) -> None:
        stamp = f"[{time.monotonic() - self._start:7.1f}s] "
        with self._lock:
            for part in self.mask(text).splitlines() or [""]:
                self._file.write(stamp + part + "\n")
                if self._echo:
                    self._echo(part)
            self._file.flush()

    def section(self, title: str) -> None:
        self.line(f"== {title}")

    def close(self) -> str:
        with self._lock:
            self._file.close()
        return self.path.read_text(encoding="utf-8", errors="replace")
