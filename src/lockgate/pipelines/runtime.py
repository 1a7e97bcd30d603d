"""What runs inside a step's process: materialise the inputs, call the step, store its output.

:func:`main` is the entry point of a step process (``python -m lockgate.pipelines.runtime
TASK_JSON`` does the same from a fresh interpreter). It runs one :class:`StepTask` with
:func:`run_task`, then writes the :class:`StepResult` to ``task.result_path`` atomically. The
order is the contract with the orchestrator: the output is durably in the artifact store before
the result file exists, so a result file on disk always describes a finished attempt and a
digest in it always names stored bytes.

Everything the step prints — from Python, from C extensions, from processes it starts — is
appended to ``task.log_path``: the redirection happens on file descriptors 1 and 2, not only on
``sys.stdout``. A step that raises gets a one-line error in its result and its traceback in the
log.

:func:`run_task` changes process-wide state (file descriptors, working directory, environment,
``sys.path``), so it belongs in a process of its own. The local executor's fork server preloads
this module, so its imports stay few; a step's own libraries load when the step imports them.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from lockgate.artifacts.store import ArtifactStore
from lockgate.pipelines.task import OUTPUT_TYPES, InputSpec, StepResult, StepTask
from lockgate.pipelines.types import Dataset, Metrics, Model, set_output_area, take_note

#: The longest error line a result carries; the full story is in the step's log.
MAX_ERROR_CHARS = 500

_FOLDERS: dict[str, type[Dataset] | type[Model]] = {"Dataset": Dataset, "Model": Model}


def run_task(task: StepTask) -> StepResult:
    """Run one step attempt in this process and store its output; never raises.

    Any failure — a bad input, the step raising, a wrong return type, an output that cannot be
    stored — becomes ``StepResult(ok=False)`` with a one-line error, and its traceback is
    printed to the step's log (or to the process's stderr when the log cannot be opened).
    """
    start = time.perf_counter()
    try:
        _redirect_output(task.log_path)
        _enter(task)
        store = ArtifactStore(task.artifact_url)
        workdir = Path(task.workdir)
        kwargs = {
            name: _materialise(task, store, name, spec, workdir)
            for name, spec in task.inputs.items()
        }
        function = _resolve(task)
        set_output_area(workdir / "outputs")
        take_note()
        try:
            value = function(**kwargs)
        finally:
            set_output_area(None)
        said = take_note()
        digest = _store_output(task, store, value)
    except BaseException as exc:  # noqa: BLE001 - every failure is the step's result; the traceback goes to its log
        traceback.print_exc()
        _flush()
        return StepResult(ok=False, error=one_line(exc), duration_s=time.perf_counter() - start)
    _flush()
    return StepResult(
        ok=True,
        output_type=task.output_type,
        output_digest=digest,
        duration_s=time.perf_counter() - start,
        note=said,
    )


def main(task_json: str) -> None:
    """Run the task ``task_json`` (a :meth:`StepTask.to_dict` document) and exit.

    Exits with 0 when the step succeeded and 1 when it failed, after writing the result file;
    a process that exits without one died before it could say how the step ended.
    """
    task = StepTask.from_dict(json.loads(task_json))
    announce(task)
    result = run_task(task)
    write_result(task.result_path, result)
    _flush()
    raise SystemExit(0 if result.ok else 1)


def announce(task: StepTask) -> None:
    """Say which process runs this attempt, next to its result file (``attempt.json``).

    An orchestrator killed after starting the attempt but before recording it finds the
    process here, and re-attaches to it instead of starting the step a second time.
    """
    import socket

    try:
        ticks: int | None = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        ticks = None
    document = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_started": ticks,
        "result_path": task.result_path,
    }
    target = Path(task.result_path).with_name("attempt.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".attempt.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, target)


def write_result(path: str, result: StepResult) -> None:
    """Write ``result`` to ``path`` atomically and durably: a reader sees all of it or none."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(json.dumps(result.to_dict()).encode())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def one_line(exc: BaseException) -> str:
    """``"ExcType: message"`` on one line, at most :data:`MAX_ERROR_CHARS` characters."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


# ---------------------------------------------------------------------- setting up


def _redirect_output(log_path: str) -> None:
    """Append fds 1 and 2 to the log, so C extensions and child processes land there too."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    _flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)
    # New text streams on the redirected fds: whatever sys.stdout was (a test runner's capture
    # object, say) may not write to fd 1. Line buffering keeps prints in order with stderr.
    sys.stdout = open(  # noqa: SIM115 - lives as long as the process
        1, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False
    )
    sys.stderr = open(  # noqa: SIM115 - lives as long as the process
        2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False
    )


def _enter(task: StepTask) -> None:
    os.environ.update(task.env)
    os.chdir(task.code_dir)
    sys.path.insert(0, task.code_dir)
    Path(task.workdir).mkdir(parents=True, exist_ok=True)


def _materialise(
    task: StepTask, store: ArtifactStore, name: str, spec: InputSpec, workdir: Path
) -> Any:
    if spec.kind == "value":
        return spec.value
    if spec.kind != "artifact" or spec.digest is None:
        raise ValueError(
            f"input {name!r} of step {task.step!r} is neither a value nor an artifact digest "
            f"(kind {spec.kind!r})."
        )
    if spec.type in _FOLDERS:
        return _FOLDERS[spec.type](store.get_tree(spec.digest, workdir / "inputs" / name))
    if spec.type == "Metrics":
        return Metrics(json.loads(store.get_bytes(spec.digest)))
    if spec.type == "json":
        return json.loads(store.get_bytes(spec.digest))
    raise ValueError(
        f"input {name!r} of step {task.step!r} has an unknown artifact type {spec.type!r}."
    )


def _resolve(task: StepTask) -> Any:
    """The function to call: ``task.qualname`` in ``task.module``, unwrapped from ``@step``."""
    preloaded = task.module in sys.modules
    module = importlib.import_module(task.module)
    if preloaded:
        _check_not_shadowed(task, module)
    target: Any = module
    for part in task.qualname.split("."):
        if part == "<locals>":
            raise TypeError(
                f"step {task.step!r} ({task.qualname}) is defined inside a function; "
                "a step must be defined at module level so its process can import it."
            )
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AttributeError(
                f"step {task.step!r}: module {task.module!r} has no {task.qualname!r}."
            ) from None
    wrapped = getattr(target, "fn", None)
    if hasattr(target, "__lockgate_step__") and callable(wrapped):
        target = wrapped
    if not callable(target):
        raise TypeError(f"step {task.step!r}: {task.module}.{task.qualname} is not callable.")
    return target


def _check_not_shadowed(task: StepTask, module: ModuleType) -> None:
    """Refuse a step module imported before the code snapshot was on ``sys.path``.

    A fork server that preloads project code would run that copy, not the snapshot the
    execution was started with.
    """
    in_snapshot = Path(task.code_dir, *task.module.split("."))
    if not (in_snapshot.with_suffix(".py").exists() or in_snapshot.is_dir()):
        return
    source = Path(getattr(module, "__file__", None) or "").resolve()
    if not source.is_relative_to(Path(task.code_dir).resolve()):
        raise ImportError(
            f"step {task.step!r}: module {task.module!r} was already imported from {source} "
            "(preloaded by the executor?), not from the execution's code snapshot. "
            "Preload third-party libraries only, never project modules."
        )


# ---------------------------------------------------------------------- the output


def _store_output(task: StepTask, store: ArtifactStore, value: Any) -> str | None:
    kind = task.output_type
    if kind == "none":
        return None
    if kind in _FOLDERS:
        if not isinstance(value, _FOLDERS[kind]):
            raise _wrong_type(task, f"a {kind}", value)
        return store.put_tree(value.path)
    if kind == "Metrics":
        if not isinstance(value, dict):
            raise _wrong_type(task, "Metrics (a dict)", value)
        return store.put_bytes(_canonical_json(task, value))
    if kind == "json":
        return store.put_bytes(_canonical_json(task, value))
    raise ValueError(
        f"step {task.step!r} declares an unknown output type {kind!r}; "
        f"expected one of {', '.join(OUTPUT_TYPES)}."
    )


def _canonical_json(task: StepTask, value: Any) -> bytes:
    try:
        return json.dumps(value, sort_keys=True).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"step {task.step!r} returned a {type(value).__name__} that cannot be stored as "
            f"JSON ({exc}); return JSON-serialisable data, or declare Dataset, Model or Metrics."
        ) from exc


def _wrong_type(task: StepTask, expected: str, value: Any) -> TypeError:
    return TypeError(
        f"step {task.step!r} declares it returns {expected}, but it returned "
        f"{type(value).__name__}."
    )


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            continue  # a stream the step closed or broke has nothing left to flush


if __name__ == "__main__":
    main(sys.argv[1])
