"""The local executor, the step runtime and artifact trees, with real processes and real files.

Steps come from ``steps_fixture.py``, copied into a temporary code snapshot as the orchestrator
would extract one. No test asserts on wall-clock time: waits have generous limits only so that
a broken executor fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lockgate.artifacts.store import ArtifactStore
from lockgate.errors import ConfigError, IntegrityError, ValidationError
from lockgate.pipelines.executors.local import LocalExecutor
from lockgate.pipelines.runtime import MAX_ERROR_CHARS
from lockgate.pipelines.task import InputSpec, StepResult, StepTask

FIXTURE = Path(__file__).with_name("steps_fixture.py")
MakeTask = Callable[..., StepTask]


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    shutil.copy(FIXTURE, code / "steps_fixture.py")
    return code


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(f"file://{tmp_path}/artifacts")


@pytest.fixture
def executor() -> Iterator[LocalExecutor]:
    with LocalExecutor(max_parallel=4) as running:
        yield running


@pytest.fixture
def make_task(tmp_path: Path, code_dir: Path, store: ArtifactStore) -> MakeTask:
    def make(
        qualname: str,
        *,
        step: str | None = None,
        module: str = "steps_fixture",
        output_type: str = "json",
        inputs: dict[str, Any] | None = None,
        artifact_url: str | None = None,
        **settings: Any,
    ) -> StepTask:
        name = step or qualname.replace(".", "_")
        attempt_dir = tmp_path / "exec" / name / "1"
        specs = {
            arg: value if isinstance(value, InputSpec) else InputSpec("value", value=value)
            for arg, value in (inputs or {}).items()
        }
        return StepTask(
            execution_id="exec-1",
            step=name,
            attempt=1,
            module=module,
            qualname=qualname,
            code_dir=str(code_dir),
            artifact_url=artifact_url or store.url,
            workdir=str(attempt_dir / "work"),
            log_path=str(tmp_path / "logs" / f"{name}.log"),
            result_path=str(attempt_dir / "result.json"),
            inputs=specs,
            output_type=output_type,
            **settings,
        )

    return make


def collect(executor: LocalExecutor, count: int, limit_s: float = 60) -> dict[str, StepResult]:
    """Wait until ``count`` attempts ended (the limit guards against a hang; it is no timing)."""
    results: dict[str, StepResult] = {}
    give_up = time.monotonic() + limit_s
    while len(results) < count:
        assert time.monotonic() < give_up, f"only {len(results)} of {count} attempts ended"
        results.update((handle.id, result) for handle, result in executor.wait(0.5))
    return results


def run(executor: LocalExecutor, task: StepTask) -> StepResult:
    handle = executor.submit(task)
    return collect(executor, 1)[handle.id]


def artifact(kind: str, result: StepResult) -> InputSpec:
    assert result.ok, result.error
    return InputSpec("artifact", kind, result.output_digest)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: it has ended and waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")


def eventually_gone(pid: int, limit_s: float = 10) -> bool:
    give_up = time.monotonic() + limit_s
    while alive(pid) and time.monotonic() < give_up:
        time.sleep(0.02)
    return not alive(pid)


def wait_for_file(path: Path, limit_s: float = 30) -> Any:
    give_up = time.monotonic() + limit_s
    while not path.exists():
        assert time.monotonic() < give_up, f"{path} never appeared"
        time.sleep(0.02)
    time.sleep(0.05)  # written with one write_text; let it finish
    return json.loads(path.read_text())


# ---------------------------------------------------------------------- outputs and inputs


def test_typed_outputs_round_trip_through_the_store(
    executor: LocalExecutor, make_task: MakeTask, store: ArtifactStore, tmp_path: Path
) -> None:
    data = run(executor, make_task("make_dataset", output_type="Dataset", inputs={"rows": 3}))
    assert data.ok and data.output_type == "Dataset", data.error
    model = run(
        executor,
        make_task(
            "train",
            output_type="Model",
            inputs={"data": artifact("Dataset", data), "factor": 4.0},
        ),
    )
    metrics = run(
        executor,
        make_task(
            "evaluate",
            output_type="Metrics",
            inputs={"model": artifact("Model", model), "data": artifact("Dataset", data)},
        ),
    )
    summary = run(
        executor,
        make_task(
            "summarise", inputs={"metrics": artifact("Metrics", metrics), "note": {"k": [1]}}
        ),
    )
    assert summary.ok and summary.output_type == "json", summary.error

    files = ["data.csv", "empty.bin", "notes/readme.txt"]
    expected_metrics = {"files": files, "mse": 2.0, "rows": 3}
    assert metrics.output_digest is not None and summary.output_digest is not None
    assert (
        store.get_bytes(metrics.output_digest)
        == json.dumps(expected_metrics, sort_keys=True).encode()
    )
    assert json.loads(store.get_bytes(summary.output_digest)) == {
        "mse": 2.0,
        "note": {"k": [1]},
        "is_metrics": True,
    }
    assert data.output_digest is not None
    folder = store.get_tree(data.output_digest, tmp_path / "check")
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == files
    assert (folder / "data.csv").read_text().splitlines() == ["x,y", "0,0", "1,2", "2,4"]


def test_none_output_stores_nothing_even_when_a_value_is_returned(
    executor: LocalExecutor, make_task: MakeTask
) -> None:
    for qualname in ("nothing", "ignored_value"):
        result = run(executor, make_task(qualname, output_type="none"))
        assert result.ok and result.output_digest is None, result.error


def test_decorated_steps_and_dotted_names_are_resolved(
    executor: LocalExecutor, make_task: MakeTask, store: ArtifactStore
) -> None:
    decorated = run(executor, make_task("decorated", inputs={"x": 21}))
    nested = run(executor, make_task("Holder.nested"))
    assert decorated.output_digest and nested.output_digest, (decorated.error, nested.error)
    assert json.loads(store.get_bytes(decorated.output_digest)) == 42
    assert json.loads(store.get_bytes(nested.output_digest)) == "nested"


def test_result_is_written_after_the_outputs_are_stored(
    executor: LocalExecutor, make_task: MakeTask, store: ArtifactStore, tmp_path: Path
) -> None:
    task = make_task("make_dataset", output_type="Dataset", inputs={"rows": 2})
    result = run(executor, task)
    on_disk = StepResult.from_dict(json.loads(Path(task.result_path).read_text()))
    assert on_disk == result and result.output_digest is not None
    store.get_tree(result.output_digest, tmp_path / "check")  # every blob named is there
    leftovers = [p for p in Path(store.root).rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_step_whose_output_cannot_be_made_durable_does_not_succeed(
    executor: LocalExecutor, make_task: MakeTask
) -> None:
    result = run(executor, make_task("unsyncable", output_type="Dataset"))
    assert not result.ok
    assert result.output_digest is None


def test_an_output_that_cannot_be_stored_fails_the_step(
    executor: LocalExecutor, make_task: MakeTask, tmp_path: Path
) -> None:
    (tmp_path / "blocker").write_text("a file where the store's folder should be")
    task = make_task(
        "make_dataset",
        output_type="Dataset",
        inputs={"rows": 1},
        artifact_url=f"file://{tmp_path}/blocker/artifacts",
    )
    result = run(executor, task)
    assert not result.ok and result.output_digest is None
    assert "Error" in (result.error or "")
    assert "Traceback" in Path(task.log_path).read_text()


# ---------------------------------------------------------------------- logs and failures


def test_stdout_and_stderr_of_everything_in_the_step_reach_its_log(
    executor: LocalExecutor, make_task: MakeTask
) -> None:
    task = make_task("noisy")
    Path(task.log_path).parent.mkdir(parents=True)
    Path(task.log_path).write_text("--- header written by the orchestrator\n")
    assert run(executor, task).ok
    log = Path(task.log_path).read_text()
    assert log.startswith("--- header written by the orchestrator\n")  # appended, not replaced
    for line in (
        "from python stdout",
        "from python stderr",
        "from fd 1 directly",
        "from a shell",
        "from a child python",
        "from C printf without a flush",
    ):
        assert line in log


def test_a_step_that_raises_fails_with_one_line_and_its_traceback_in_the_log(
    executor: LocalExecutor, make_task: MakeTask
) -> None:
    task = make_task("fails", output_type="none")
    result = run(executor, task)
    assert not result.ok and result.error is not None
    assert result.error.startswith("ValueError: bad thing xxx")
    assert "\n" not in result.error and len(result.error) <= MAX_ERROR_CHARS
    log = Path(task.log_path).read_text()
    assert "Traceback (most recent call last)" in log and 'raise ValueError("bad' in log


def test_a_wrong_return_type_names_the_step_and_both_types(
    executor: LocalExecutor, make_task: MakeTask
) -> None:
    result = run(executor, make_task("wrong_type", output_type="Model"))
    assert result.error == (
        "TypeError: step 'wrong_type' declares it returns a Model, but it returned dict."
    )
    unstorable = run(executor, make_task("not_json"))
    assert "step 'not_json' returned a object that cannot be stored as JSON" in (
        unstorable.error or ""
    )


def test_an_unknown_function_is_a_clear_error(executor: LocalExecutor, make_task: MakeTask) -> None:
    result = run(executor, make_task("missing"))
    assert (
        result.error == "AttributeError: step 'missing': module 'steps_fixture' has no 'missing'."
    )


def test_a_step_over_its_timeout_is_stopped_with_what_it_started(
    executor: LocalExecutor, make_task: MakeTask, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids.json"
    task = make_task("sleeper", inputs={"seconds": 30, "pid_file": str(pid_file)}, timeout_s=0.5)
    result = run(executor, task)
    assert not result.ok and result.error == "timed out after 0.5 s"
    pids = json.loads(pid_file.read_text())
    assert not alive(pids["step"])
    assert eventually_gone(pids["child"]), "the step's own child process outlived it"
    assert "timed out after 0.5 s" in Path(task.log_path).read_text()
    assert executor.running() == 0


def test_a_step_killed_by_a_signal_is_reported_as_died(
    executor: LocalExecutor, make_task: MakeTask
) -> None:
    result = run(executor, make_task("kill_myself", output_type="none"))
    assert not result.ok and result.error == "the step's process died (signal 9)"


def test_cancel_stops_the_step(
    executor: LocalExecutor, make_task: MakeTask, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids.json"
    handle = executor.submit(
        make_task("sleeper", inputs={"seconds": 30, "pid_file": str(pid_file)})
    )
    pids = wait_for_file(pid_file)
    assert executor.running() == 1
    executor.cancel(handle)
    executor.cancel(handle)  # idempotent
    assert collect(executor, 1)[handle.id].error == "cancelled"
    assert not alive(pids["step"]) and eventually_gone(pids["child"])
    assert executor.running() == 0
    executor.cancel(handle)  # already reported: ignored


# ---------------------------------------------------------------------- isolation and parallelism


def test_running_counts_what_has_not_been_reported(
    executor: LocalExecutor, make_task: MakeTask
) -> None:
    assert executor.running() == 0
    executor.submit(make_task("slow_value", step="a", inputs={"seconds": 0.2, "value": 1}))
    executor.submit(make_task("slow_value", step="b", inputs={"seconds": 0.2, "value": 2}))
    assert executor.running() == 2
    results = collect(executor, 2)
    assert all(r.ok for r in results.values()) and executor.running() == 0
    assert executor.wait(0) == []


def test_steps_run_in_parallel(
    executor: LocalExecutor, make_task: MakeTask, tmp_path: Path
) -> None:
    """Each step waits until all four have started, so they can only succeed together."""
    arrivals = tmp_path / "arrivals"
    arrivals.mkdir()
    tasks = [
        make_task(
            "rendezvous", step=f"r{i}", inputs={"folder": str(arrivals), "me": f"r{i}", "total": 4}
        )
        for i in range(4)
    ]
    handles = [executor.submit(task) for task in tasks]
    assert executor.running() == 4
    results = collect(executor, 4)
    assert all(results[h.id].ok for h in handles), [r.error for r in results.values()]
    store = ArtifactStore(tasks[0].artifact_url)
    spans = [json.loads(store.get_bytes(results[h.id].output_digest or "")) for h in handles]
    assert max(s["start"] for s in spans) < min(s["end"] for s in spans)


def test_many_short_steps_through_two_slots_are_all_reported(
    make_task: MakeTask,
) -> None:
    """Steps end while the next is being forked: no end may be lost on the way (a regression)."""
    with LocalExecutor(max_parallel=2) as executor:
        submitted, reported = 0, dict[str, StepResult]()
        give_up = time.monotonic() + 120
        while len(reported) < 60:
            assert time.monotonic() < give_up, f"{len(reported)} of {submitted} reported"
            while submitted < 60 and executor.running() < executor.max_parallel:
                executor.submit(make_task("nothing", step=f"n{submitted}", output_type="none"))
                submitted += 1
            reported.update((h.id, r) for h, r in executor.wait(0.5))
    assert all(r.ok for r in reported.values())


def test_each_step_is_its_own_process_in_the_code_dir_with_its_env(
    executor: LocalExecutor, make_task: MakeTask, store: ArtifactStore, code_dir: Path
) -> None:
    first = run(executor, make_task("where", step="w1", env={"LOCKGATE_TEST_VAR": "hello"}))
    second = run(executor, make_task("where", step="w2"))
    seen = [json.loads(store.get_bytes(r.output_digest or "")) for r in (first, second)]
    assert seen[0]["cwd"] == str(code_dir) and seen[0]["sys_path_0"] == str(code_dir)
    assert seen[0]["var"] == "hello" and seen[1]["var"] is None
    assert len({seen[0]["pid"], seen[1]["pid"], os.getpid()}) == 3
    remembered = [run(executor, make_task("remember", step=f"m{i}")) for i in range(2)]
    counts = [json.loads(store.get_bytes(r.output_digest or "")) for r in remembered]
    assert counts == [1, 1], "a step saw module state left by another"


def test_preload_belongs_to_one_executor(make_task: MakeTask, store: ArtifactStore) -> None:
    with (
        LocalExecutor(preload=["colorsys"]) as warm,
        LocalExecutor() as plain,
    ):
        with_it = run(warm, make_task("has_module", step="a", inputs={"name": "colorsys"}))
        without = run(plain, make_task("has_module", step="b", inputs={"name": "colorsys"}))
    assert json.loads(store.get_bytes(with_it.output_digest or "")) is True
    assert json.loads(store.get_bytes(without.output_digest or "")) is False


def test_a_preload_that_cannot_be_imported_is_a_config_error(make_task: MakeTask) -> None:
    with (
        LocalExecutor(preload=["no_such_module_for_lockgate"]) as broken,
        pytest.raises(ConfigError, match="no_such_module_for_lockgate"),
    ):
        broken.submit(make_task("nothing", output_type="none"))


def test_a_preloaded_project_module_is_refused(
    make_task: MakeTask, code_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "shadowme.py").write_text("def f():\n    return 'stale'\n")
    (code_dir / "shadowme.py").write_text("def f():\n    return 'snapshot'\n")
    monkeypatch.syspath_prepend(str(elsewhere))
    with LocalExecutor(preload=["shadowme"]) as shadowed:
        result = run(shadowed, make_task("f", module="shadowme"))
    assert not result.ok and "Preload third-party libraries only" in (result.error or "")


# ---------------------------------------------------------------------- adoption


def test_a_new_executor_adopts_a_running_step(
    executor: LocalExecutor, make_task: MakeTask, store: ArtifactStore
) -> None:
    task = make_task("slow_value", inputs={"seconds": 1.0, "value": "late"})
    handle = executor.submit(task)
    with LocalExecutor() as successor:
        adopted = successor.adopt(task, {"id": handle.id, **handle.info})
        assert adopted is not None and adopted.id == handle.id
        assert successor.running() == 1
        result = collect(successor, 1)[handle.id]
    assert result.ok and json.loads(store.get_bytes(result.output_digest or "")) == "late"
    collect(executor, 1)


@pytest.mark.slow
def test_steps_survive_a_killed_orchestrator_and_are_adopted(
    make_task: MakeTask, store: ArtifactStore
) -> None:
    task = make_task("slow_value", inputs={"seconds": 1.5, "value": "survived"})
    script = (
        "import json, sys, time\n"
        "from lockgate.pipelines.executors.local import LocalExecutor\n"
        "from lockgate.pipelines.task import StepTask\n"
        "handle = LocalExecutor().submit(StepTask.from_dict(json.loads(sys.argv[1])))\n"
        "print(json.dumps(handle.info), flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(task.to_dict())],
        stdout=subprocess.PIPE,
        text=True,
    ) as orchestrator:
        assert orchestrator.stdout is not None
        info = json.loads(orchestrator.stdout.readline())
        orchestrator.send_signal(signal.SIGKILL)
        orchestrator.wait()
    assert alive(info["pid"]), "the step died with its orchestrator"
    with LocalExecutor() as successor:
        assert successor.adopt(task, info) is not None
        result = next(iter(collect(successor, 1).values()))
    assert result.ok and json.loads(store.get_bytes(result.output_digest or "")) == "survived"


def test_steps_outlive_a_dead_fork_server_and_a_new_one_takes_over(
    executor: LocalExecutor, make_task: MakeTask, tmp_path: Path, store: ArtifactStore
) -> None:
    pid_file = tmp_path / "pids.json"
    handle = executor.submit(make_task("sleeper", inputs={"seconds": 1, "pid_file": str(pid_file)}))
    pids = wait_for_file(pid_file)
    os.kill(pids["parent"], signal.SIGKILL)  # the fork server
    result = collect(executor, 1)[handle.id]
    assert result.ok and json.loads(store.get_bytes(result.output_digest or "")) == "woke up"
    assert eventually_gone(pids["child"]), "what the step left running outlived it"
    after = run(executor, make_task("nothing", output_type="none"))
    assert after.ok, after.error


def test_a_finished_step_is_adopted_from_its_result_file(
    executor: LocalExecutor, make_task: MakeTask
) -> None:
    task = make_task("slow_value", inputs={"seconds": 0, "value": 7})
    handle = executor.submit(task)
    first = collect(executor, 1)[handle.id]
    with LocalExecutor() as successor:
        adopted = successor.adopt(task, handle.info)
        assert adopted is not None
        assert collect(successor, 1) == {handle.id: first}


def test_a_step_gone_without_result_is_not_adopted(make_task: MakeTask) -> None:
    task = make_task("nothing", output_type="none")
    with subprocess.Popen(["true"]) as finished:
        finished.wait()
    here = socket.gethostname()
    own_ticks = int(Path("/proc/self/stat").read_bytes().rsplit(b")", 1)[1].split()[19])
    with LocalExecutor() as successor:
        for info in (
            {"host": here, "pid": finished.pid, "pid_started": 1},  # dead
            {"host": here, "pid": os.getpid(), "pid_started": own_ticks + 1},  # pid reused
            {"host": here, "pid": os.getpid(), "pid_started": None},  # start unknown
            {"host": "another-host", "pid": os.getpid(), "pid_started": own_ticks},
        ):
            assert successor.adopt(task, info) is None, info
        assert successor.running() == 0


# ---------------------------------------------------------------------- artifact trees


def test_a_tree_round_trips_with_stable_digests(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "sub" / "deeper").mkdir(parents=True)
    (source / "a.txt").write_text("alpha")
    (source / "sub" / "deeper" / "b.bin").write_bytes(bytes(range(256)) * 4000)
    (source / "empty").write_bytes(b"")
    (source / "link.txt").symlink_to(source / "a.txt")
    digest = store.put_tree(source)
    assert store.put_tree(source) == digest
    manifest = json.loads(store.get_bytes(digest))
    assert [e["path"] for e in manifest] == ["a.txt", "empty", "link.txt", "sub/deeper/b.bin"]
    assert manifest[3]["size"] == 256 * 4000
    dest = store.get_tree(digest, tmp_path / "dest")
    for rel in ("a.txt", "empty", "link.txt", "sub/deeper/b.bin"):
        assert (dest / rel).read_bytes() == (source / rel).read_bytes()


def test_get_tree_refuses_a_corrupt_file(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "data.csv").write_text("x\n1\n")
    digest = store.put_tree(source)
    blob = json.loads(store.get_bytes(digest))[0]["digest"].removeprefix("sha256:")
    Path(store.root, "blobs", blob[:2], blob).write_text("x\n2\n")
    with pytest.raises(IntegrityError, match="is corrupt"):
        store.get_tree(digest, tmp_path / "dest")
    assert not (tmp_path / "dest" / "data.csv").exists()


@pytest.mark.parametrize(
    "path", ["../evil.txt", "/tmp/evil.txt", "a/../../evil.txt", "", ".", "link/evil.txt"]
)
def test_get_tree_refuses_paths_outside_the_folder(
    store: ArtifactStore, tmp_path: Path, path: str
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(tmp_path)
    blob = store.put_bytes(b"evil")
    entries = [
        {"path": "fine.txt", "digest": blob, "size": 4},
        {"path": path, "digest": blob, "size": 4},
    ]
    manifest = store.put_bytes(json.dumps(entries).encode())
    with pytest.raises(ValidationError, match="outside the folder"):
        store.get_tree(manifest, dest)
    assert not (dest / "fine.txt").exists(), "a refused tree wrote some of its files"
    assert not (tmp_path / "evil.txt").exists()


def test_get_tree_of_something_else_is_a_clear_error(store: ArtifactStore, tmp_path: Path) -> None:
    digest = store.put_bytes(json.dumps({"mse": 1.0}).encode())
    with pytest.raises(ValidationError, match="is not a folder"):
        store.get_tree(digest, tmp_path / "dest")


def test_put_tree_refuses_a_broken_link(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ValidationError, match="not a regular file"):
        store.put_tree(source)


def test_put_bytes_is_content_addressed_and_verified(store: ArtifactStore) -> None:
    digest = store.put_bytes(b"hello")
    assert store.put_bytes(b"hello") == digest and store.get_bytes(digest) == b"hello"
    hexdigest = digest.removeprefix("sha256:")
    blob = Path(store.root, "blobs", hexdigest[:2], hexdigest)
    assert [p.name for p in blob.parent.iterdir()] == [hexdigest]  # no temporary files left
    blob.write_bytes(b"HELLO")
    with pytest.raises(IntegrityError):
        store.get_bytes(digest)
