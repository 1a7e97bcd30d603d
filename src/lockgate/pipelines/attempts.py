"""One attempt of a step, as the orchestrator prepares and finds it: its task (folders, inputs,
environment) and the process it announced."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from lockgate.pipelines.task import InputSpec, StepTask


def build_task(
    *,
    execution_id: str,
    name: str,
    step: dict[str, Any],
    attempt: int,
    inputs: dict[str, dict[str, Any]],
    exec_dir: Path,
    code_dir: Path,
    artifact_url: str,
) -> StepTask:
    """The task of attempt ``attempt`` of step ``name``: a folder of its own under ``exec_dir``."""
    specs = {
        arg: InputSpec("artifact", v["type"], v["digest"])
        if "digest" in v
        else InputSpec("value", value=v["value"])
        for arg, v in inputs.items()
    }
    if step["kind"] == "transform":
        module, qualname = "lockgate.pipelines.builtin", "batch_transform"
    else:
        module, qualname = step["module"], step["function"]
    settings = step.get("settings", {})
    attempt_dir = exec_dir / name / str(attempt)
    return StepTask(
        execution_id=execution_id,
        step=name,
        attempt=attempt,
        module=module,
        qualname=qualname,
        code_dir=str(code_dir),
        artifact_url=artifact_url,
        workdir=str(attempt_dir / "work"),
        log_path=str(exec_dir / f"{name}.log"),
        result_path=str(attempt_dir / "result.json"),
        inputs=specs,
        output_type=step["output_type"],
        env=thread_limits(int(settings.get("cpus", 1))) | dict(settings.get("env", {})),
        timeout_s=settings.get("timeout_s"),
        cpus=int(settings.get("cpus", 1)),
    )


def thread_limits(cpus: int) -> dict[str, str]:
    """A step's CPU setting as the thread pools of numeric libraries read it.

    Left alone, OpenMP and BLAS take every core in every step process, and parallel steps then
    fight over them; the step's own ``env`` may still set these variables otherwise.
    """
    value = str(cpus)
    return {name: value for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def announced(task: StepTask, grace_s: float = 2.0) -> dict[str, Any] | None:
    """The process an attempt announced (see ``runtime.announce``), waiting ``grace_s`` for a
    step that was started just before its orchestrator died; None if it never started."""
    announcement = Path(task.result_path).with_name("attempt.json")
    deadline = time.monotonic() + grace_s
    while True:
        if announcement.exists():
            return dict(json.loads(announcement.read_text()))
        if Path(task.result_path).exists():
            return {"result_path": task.result_path}
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)
