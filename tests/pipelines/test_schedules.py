"""Schedules: due slots start one run each, missed slots run once, and no slot runs twice."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lockgate.auth.principal import Principal
from lockgate.errors import ConflictError, NotFoundError, PermissionDeniedError, ValidationError
from lockgate.pipelines import schedules, service
from lockgate.platform import Platform
from lockgate.store import schedules as db
from support import run_cli

PROJECT = Path(__file__).parent / "projects" / "basic"


@pytest.fixture
def scheduled(platform: Platform, admin: Principal, tmp_path: Path) -> Platform:
    shutil.copytree(PROJECT, tmp_path / "project")
    service.upsert(platform, admin, f"{tmp_path / 'project'}/pipe.py:basic")
    return platform


def _created_at(platform: Platform, name: str, when: datetime) -> None:
    with platform.env("dev").store.transaction() as session:
        db.change(session, name, created_at=when.strftime("%Y-%m-%dT%H:%M:%SZ"))


def test_a_due_slot_starts_one_run_and_missed_slots_run_once(
    scheduled: Platform, admin: Principal
) -> None:
    schedules.create(scheduled, admin, "hourly", "basic", "0 * * * *", {"n": "7"})
    start = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    _created_at(scheduled, "hourly", start)

    assert schedules.tick(scheduled, start + timedelta(minutes=10)) == []  # no slot yet
    [fired] = schedules.tick(scheduled, start + timedelta(minutes=31))  # 10:00 came
    assert fired.slot == "2026-11-27T10:00:00Z" and fired.execution is not None
    assert fired.execution.parameters["n"] == 7 and fired.execution.created_by == admin.name
    assert schedules.tick(scheduled, start + timedelta(minutes=45)) == []  # same slot: nothing

    # The daemon was down from 10:45 to 15:20: the missed 11:00 … 15:00 slots run once, for 15:00.
    [caught_up] = schedules.tick(scheduled, datetime(2026, 11, 27, 15, 20, tzinfo=UTC))
    assert caught_up.slot == "2026-11-27T15:00:00Z"
    assert len(service.list_executions(scheduled, admin, pipeline="basic")) == 2
    [listed] = schedules.list_schedules(scheduled, admin)
    assert listed.last_slot == caught_up.slot and listed.last_execution == caught_up.execution.id


def test_concurrent_ticks_never_start_a_slot_twice(scheduled: Platform, admin: Principal) -> None:
    schedules.create(scheduled, admin, "often", "basic", "*/5 * * * *", {})
    _created_at(scheduled, "often", datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
    moment = datetime(2026, 11, 27, 9, 7, tzinfo=UTC)
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.extend(schedules.tick(scheduled, moment)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = {f.execution.id for f in results if f.execution is not None}  # type: ignore[attr-defined]
    assert len(started) == 1
    assert len(service.list_executions(scheduled, admin, pipeline="basic")) == 1


def test_paused_schedules_do_not_run_and_bad_input_is_refused(
    scheduled: Platform, admin: Principal
) -> None:
    schedules.create(scheduled, admin, "daily", "basic", "0 6 * * *", {})
    _created_at(scheduled, "daily", datetime(2026, 11, 26, 0, 0, tzinfo=UTC))
    schedules.set_paused(scheduled, admin, "daily", True)
    assert schedules.tick(scheduled, datetime(2026, 11, 27, 7, 0, tzinfo=UTC)) == []
    with pytest.raises(ValidationError, match="is not a cron expression"):
        schedules.create(scheduled, admin, "bad", "basic", "every day", {})
    with pytest.raises(ValidationError, match="is not a cron expression"):
        schedules.create(scheduled, admin, "bad", "basic", "61 * * * *", {})
    with pytest.raises(ValidationError, match="has no parameter 'nope'"):
        schedules.create(scheduled, admin, "bad", "basic", "0 6 * * *", {"nope": "1"})
    with pytest.raises(NotFoundError, match="pipeline ghost does not exist"):
        schedules.create(scheduled, admin, "bad", "ghost", "0 6 * * *", {})
    with pytest.raises(ConflictError, match="already exists"):
        schedules.create(scheduled, admin, "daily", "basic", "0 6 * * *", {})
    with pytest.raises(PermissionDeniedError):
        schedules.create(scheduled, Principal("user:mallory"), "x", "basic", "0 6 * * *", {})
    with pytest.raises(NotFoundError, match="no schedule nope"):
        schedules.delete(scheduled, admin, "nope")


def test_cli(scheduled: Platform) -> None:
    home = scheduled.home
    made = run_cli(
        home,
        "schedule",
        "create",
        "nightly",
        "--pipeline",
        "basic",
        "--cron",
        "0 2 * * *",
        "-p",
        "n=5",
    )
    assert made.code == 0 and "next run" in made.out, made.err
    [listed] = json.loads(run_cli(home, "schedule", "list", "--json").out)
    assert (
        listed["cron"] == "0 2 * * *" and listed["parameters"] == {"n": "5"} and listed["next_slot"]
    )
    assert run_cli(home, "schedule", "pause", "nightly").code == 0
    assert json.loads(run_cli(home, "schedule", "list", "--json").out)[0]["paused"] is True
    assert run_cli(home, "schedule", "resume", "nightly").code == 0
    bad = run_cli(home, "schedule", "create", "x", "--pipeline", "basic", "--cron", "nope")
    assert bad.code == 4 and "minute hour day-of-month" in bad.err
    assert run_cli(home, "schedule", "delete", "nightly").code == 0
    assert json.loads(run_cli(home, "schedule", "list", "--json").out) == []
