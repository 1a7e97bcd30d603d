"""Deliveries in the store: claims are leases, finishes are fenced, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from lockgate.store import MetadataStore, events
from lockgate.store import automation as db
from lockgate.store.automation import Outcome
from lockgate.store.engine import dispose_all

RULE: dict[str, Any] = {
    "event": "ModelCardChanged",
    "action": {"kind": "command", "command": ["true"], "timeout_s": 5.0},
    "max_attempts": 3,
    "backoff_s": 10.0,
}


def lease(action: dict[str, Any]) -> float:
    return float(action["timeout_s"])


@pytest.fixture
def store(metadata_url: str) -> Iterator[MetadataStore]:
    store = MetadataStore(metadata_url)
    store.upgrade()
    yield store
    dispose_all()


def _deliveries(store: MetadataStore, n: int, now: float = 1000.0) -> list[str]:
    with store.transaction() as s:
        ids = []
        for i in range(n):
            event = events.emit(
                s, "ModelCardChanged", f"g/{i}", {"group": "g", "version": i, "fields": []}
            )
            db.add_delivery(s, event.id, "r", RULE, now)
            ids.append(event.id)
        db.mark_dispatched(s, ids)
    return ids


def test_a_claim_is_a_lease_and_a_finish_is_fenced(store: MetadataStore) -> None:
    _deliveries(store, 1)
    with store.transaction() as s:
        first = db.claim(s, "worker-a", 1000.0, lease)
    assert first is not None and first.status == "running" and first.attempts == 1
    with store.transaction() as s:
        assert db.claim(s, "worker-b", 1004.0, lease) is None  # still leased to worker-a
    with store.transaction() as s:
        second = db.claim(s, "worker-b", 1006.0, lease)  # the lease expired: worker-a died
    assert second is not None and second.id == first.id and second.attempts == 2
    assert second.history[0]["outcome"] == "abandoned" and "worker-a" in second.history[0]["error"]
    with store.transaction() as s:
        # worker-a comes back late: its outcome is not recorded over worker-b's claim.
        assert db.finish(s, first, "worker-a", Outcome(True, {}), 1007.0) is None
        done = db.finish(s, second, "worker-b", Outcome(True, {"exit_code": 0}), 1007.0)
    assert done is not None and done.status == "succeeded" and done.finished_at
    assert [h["outcome"] for h in done.history] == ["abandoned", "succeeded"]


def test_retries_back_off_then_fail_and_redeliver_gives_one_more(store: MetadataStore) -> None:
    _deliveries(store, 1)
    now = 1000.0
    waits = []
    for attempt in (1, 2, 3):
        with store.transaction() as s:
            claimed = db.claim(s, "w", now, lease)
            assert claimed is not None and claimed.attempts == attempt
            after = db.finish(s, claimed, "w", Outcome(False, {}, "503"), now)
        assert after is not None
        if attempt < 3:
            assert after.status == "pending" and after.last_error == "503"
            waits.append(after.next_attempt_at - now)
            with store.transaction() as s:
                assert db.claim(s, "w", now + waits[-1] - 0.01, lease) is None  # not yet due
            now = after.next_attempt_at
    assert waits == [10.0, 20.0]
    assert after.status == "failed" and after.attempts == 3
    with store.transaction() as s:
        again = db.redeliver(s, after.id, now)
        assert again is not None and again.status == "pending" and again.max_attempts == 4
        claimed = db.claim(s, "w", now, lease)
        assert claimed is not None and claimed.attempts == 4


def test_a_permanent_failure_is_not_retried(store: MetadataStore) -> None:
    _deliveries(store, 1)
    with store.transaction() as s:
        claimed = db.claim(s, "w", 1000.0, lease)
        assert claimed is not None
        after = db.finish(s, claimed, "w", Outcome(False, {}, "404", retryable=False), 1000.0)
    assert after is not None and after.status == "failed" and after.attempts == 1


def test_concurrent_claims_take_each_delivery_once(store: MetadataStore) -> None:
    _deliveries(store, 30)
    taken: list[str] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        while True:
            with store.transaction() as s:
                claimed = db.claim(s, name, 1000.0, lease)
            if claimed is None:
                return
            with lock:
                taken.append(claimed.id)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 30 and len(set(taken)) == 30


def test_one_delivery_per_event_and_rule(store: MetadataStore) -> None:
    [event_id] = _deliveries(store, 1)
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), store.transaction() as s:
        db.add_delivery(s, event_id, "r", RULE, 1000.0)
