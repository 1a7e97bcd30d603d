"""The infrastructure lock with real processes: a race, a kill -9, Ctrl-C and unlock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lockgate.auth.principal import Principal
from lockgate.config.home import Home
from lockgate.errors import ConflictError, LockHeldError, NotFoundError
from lockgate.infra import service
from lockgate.infra.lock import StateLock
from lockgate.platform import Platform
from support import run_cli

pytestmark = pytest.mark.slow


def _slow_apply(home: Home, delay: float = 0.3) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "LOCKGATE_HOME": str(home.root),
        "LOCKGATE_TEST_APPLY_DELAY_S": str(delay),
        "COLUMNS": "200",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "lockgate", "infra", "apply", "--yes"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_changes(proc: subprocess.Popen[str], count: int) -> list[str]:
    """Read the apply's output until ``count`` changes were reported as done."""
    assert proc.stdout is not None
    done: list[str] = []
    deadline = time.monotonic() + 60
    while len(done) < count and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "created" in line:
            done.append(line.strip())
    assert len(done) == count, (
        f"apply reported {done}; stderr: {proc.stderr.read() if proc.stderr else ''}"
    )
    return done


def test_second_apply_fails_at_once_naming_the_holder(
    platform: Platform, home: Home, admin: Principal
) -> None:
    with _slow_apply(home) as first:
        _wait_for_changes(first, 1)
        started = time.monotonic()
        second = run_cli(home, "infra", "apply", "--yes")
        assert time.monotonic() - started < 30  # it did not wait for the first to finish
        assert second.code == LockHeldError.exit_code
        held = StateLock(home.state_dir).current()
        assert held is not None
        assert f"held by {admin.name} for 'apply'" in second.err
        assert held.id in second.err and f"pid {first.pid}" in second.err
        assert "Traceback" not in second.err
        first.communicate(timeout=60)
    assert first.returncode == 0
    assert service.current_lock(platform) is None
    assert not service.plan(platform, admin).has_changes


def test_kill_during_apply_leaves_consistent_state_and_a_stale_lock(
    platform: Platform, home: Home, admin: Principal
) -> None:
    with _slow_apply(home, delay=0.5) as proc:
        _wait_for_changes(proc, 2)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)

    # State: still parseable, the last complete version (the kill came before any new one).
    versions = service.state_store(platform).version_numbers()
    for number in versions:
        json.loads((home.state_dir / "versions" / f"{number:08d}.json").read_text())
    assert not list((home.state_dir / "versions").glob(".*.tmp"))

    # The lock is clearly stale, and a new apply says how to break it.
    held = service.current_lock(platform)
    assert held is not None and held.pid == proc.pid and held.is_stale()
    refused = run_cli(home, "infra", "apply", "--yes")
    assert refused.code == LockHeldError.exit_code
    assert f"lockgate infra unlock {held.id}" in refused.err
    status = run_cli(home, "status", "--json")
    assert json.loads(status.out)["lock"]["stale"] is True

    # The next plan shows what is left: the killed apply did some, not all.
    remaining = service.plan(platform, admin).counts()["create"]
    assert 0 < remaining < 18

    with pytest.raises(NotFoundError, match="not the current lock"):
        service.unlock(platform, admin, "01NOTTHELOCK0000000000000")
    unlocked = run_cli(home, "infra", "unlock", held.id)
    assert unlocked.code == 0, unlocked.err
    with platform.env("prod").store.transaction() as session:
        from lockgate.auth.audit import list_events

        [event] = list_events(session, action="infra.unlock")
    assert event.details["pid"] == proc.pid and event.actor == admin.name

    finished = run_cli(home, "infra", "apply", "--yes")
    assert finished.code == 0, finished.err
    assert not service.plan(platform, admin).has_changes


def test_ctrl_c_releases_the_lock_and_records_progress(
    platform: Platform, home: Home, admin: Principal
) -> None:
    with _slow_apply(home, delay=0.5) as proc:
        _wait_for_changes(proc, 2)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert service.current_lock(platform) is None
    state = service.state_store(platform).current()
    assert state is not None and state.operation == "apply" and state.outcome == "interrupted"
    assert 2 <= len(state.changes) < 18
    remaining = service.plan(platform, admin).counts()["create"]
    assert remaining == 18 - len(state.changes)


def test_sigterm_also_releases_the_lock(platform: Platform, home: Home) -> None:
    with _slow_apply(home, delay=0.5) as proc:
        _wait_for_changes(proc, 1)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert service.current_lock(platform) is None


def test_a_live_lock_cannot_be_broken(platform: Platform, admin: Principal) -> None:
    lock = service.state_lock(platform)
    with lock.hold("user:someone", "apply") as info:
        with pytest.raises(ConflictError, match="still running"):
            service.unlock(platform, admin, info.id)
        with pytest.raises(LockHeldError):
            service.apply(platform, admin, confirm=lambda plan: True)
    assert lock.current() is None
