"""The contract between the orchestrator and an executor: what a step attempt needs, and what it
returns. Both are plain JSON-ready data, so a task can cross a process or a machine boundary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Output types a step can declare (its return annotation).
OUTPUT_TYPES = ("Dataset", "Model", "Metrics", "json", "none")


@dataclass(frozen=True)
class InputSpec:
    """One argument of a step: an artifact (by digest and type) or a plain JSON value."""

    kind: str  # "artifact" | "value"
    type: str | None = None  # for artifacts: Dataset | Model | Metrics | json
    digest: str | None = None
    value: Any = None


@dataclass(frozen=True)
class StepTask:
    """One attempt of one step.

    ``code_dir`` holds the execution's code snapshot, already extracted; the step runs with it as
    its working directory and first entry of ``sys.path``. ``workdir`` is a scratch folder owned by
    this attempt (inputs are materialised and outputs staged there). The step's stdout and stderr
    go to ``log_path``; its :class:`StepResult` is written atomically to ``result_path`` before the
    process exits, and only after its output is durably stored in the artifact store.
    """

    execution_id: str
    step: str
    attempt: int
    module: str
    qualname: str
    code_dir: str
    artifact_url: str
    workdir: str
    log_path: str
    result_path: str
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    output_type: str = "json"
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    cpus: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepTask:
        inputs = {k: InputSpec(**v) for k, v in data.get("inputs", {}).items()}
        return cls(**{**data, "inputs": inputs})


@dataclass(frozen=True)
class StepResult:
    """How an attempt ended. ``error`` is one line; the traceback is in the step's log."""

    ok: bool
    output_type: str | None = None
    output_digest: str | None = None
    error: str | None = None
    duration_s: float = 0.0
    #: What the step said of its result with ``note()`` (shown as the step's reason).
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepResult:
        return cls(**data)
