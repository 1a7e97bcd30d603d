"""The executor interface: submit step attempts, collect how they ended.

An executor knows nothing of pipelines, stores or caching: it receives a :class:`StepTask`, runs
it somewhere isolated, enforces its timeout, and reports a :class:`StepResult`. The orchestrator
calls it from one thread.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from lockgate.pipelines.task import StepResult, StepTask


@dataclass(frozen=True)
class TaskHandle:
    """A submitted attempt. ``info`` is what a later orchestrator needs to re-attach to it
    (for the local executor: host, pid and process start time); it is stored with the step."""

    id: str
    info: dict[str, Any] = field(default_factory=dict)


class Executor(ABC):
    """Runs step attempts in isolation, up to ``max_parallel`` at once."""

    max_parallel: int

    @abstractmethod
    def submit(self, task: StepTask) -> TaskHandle:
        """Start ``task``; returns at once. The caller keeps ``running() < max_parallel``."""

    @abstractmethod
    def wait(self, timeout: float) -> list[tuple[TaskHandle, StepResult]]:
        """Attempts that ended since the last call, waiting up to ``timeout`` seconds for one.

        A task that exceeded its ``timeout_s`` is stopped and reported with an error saying so; a
        task whose process died without a result is reported with an error naming the signal.
        """

    @abstractmethod
    def cancel(self, handle: TaskHandle) -> None:
        """Stop an attempt; it is then reported by :meth:`wait` as failed ("cancelled")."""

    @abstractmethod
    def adopt(self, task: StepTask, info: dict[str, Any]) -> TaskHandle | None:
        """Re-attach to an attempt started by an orchestrator that is gone.

        Returns a handle that :meth:`wait` will report on if the attempt is still running or has
        left a result; None when it is certainly gone without a result (it must be run again).
        """

    @abstractmethod
    def running(self) -> int:
        """How many submitted or adopted attempts have not been reported yet."""

    @abstractmethod
    def shutdown(self) -> None:
        """Stop every running attempt and release resources."""
