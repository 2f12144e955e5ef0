"""Group commit (appliance.queue.intake): batching, durability order, failures, shutdown."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import wait

import pytest
from sqlalchemy import func, select, text

from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, QueueEntry
from appliance.errors import StoreUnavailable
from appliance.queue.intake import Intake
from appliance.queue.spool import Spool
from appliance.types import Envelope, NewMessage


def message(*rcpts: str) -> NewMessage:
    return NewMessage(msgid=str(uuid.uuid4()), path="", size=5, received=time.time(),
                      envelope=Envelope(sender="s@example.com", recipients=rcpts or ("r@example.org",)))


def count(store: Store, model: type) -> int:
    with store.transaction(read_only=True) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_concurrent_submissions_share_transactions(store: Store, spool: Spool) -> None:
    intake = Intake(store, spool)
    intake.start()
    try:
        futures = [intake.submit(message(), b"body\r\n") for _ in range(200)]
        wait(futures, timeout=120)
        results = [f.result() for f in futures]
    finally:
        intake.stop()
    assert len({r.queue_ids[0] for r in results}) == 200
    assert count(store, QueueEntry) == 200 and len(spool.all_paths()) == 200
    assert intake.batches < 200  # some transactions carried several messages


def test_result_comes_after_the_commit_with_spool_path(store: Store, spool: Spool) -> None:
    intake = Intake(store, spool)
    intake.start()
    try:
        msg = message("a@example.org", "b@example.org")
        accepted = intake.submit(msg, b"Subject: x\r\n\r\nx\r\n").result(timeout=60)
    finally:
        intake.stop()
    with store.transaction(read_only=True) as session:
        rows = list(session.scalars(select(QueueEntry).where(QueueEntry.id.in_(accepted.queue_ids))))
    assert {r.rcpt for r in rows} == {"a@example.org", "b@example.org"}
    assert spool.read(rows[0].path) == b"Subject: x\r\n\r\nx\r\n"


def test_a_failed_commit_fails_every_waiter_and_removes_their_bodies(store: Store, spool: Spool) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE queue RENAME TO queue_away"))
    intake = Intake(store, spool)
    intake.start()
    try:
        futures = [intake.submit(message(), b"x") for _ in range(5)]
        wait(futures, timeout=60)
    finally:
        intake.stop()
        with store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE queue_away RENAME TO queue"))
    assert all(f.exception() is not None for f in futures)
    assert spool.all_paths() == []


def test_deleted_recipients_go_to_history(store: Store, spool: Spool) -> None:
    intake = Intake(store, spool)
    intake.start()
    try:
        accepted = intake.submit(message("kept@example.org"), b"x",
                                 deleted=("gone@example.org",)).result(timeout=60)
    finally:
        intake.stop()
    assert accepted.deleted == ["gone@example.org"] and len(accepted.queue_ids) == 1
    with store.transaction(read_only=True) as session:
        assert [(h.rcpt, h.action, h.path) for h in session.scalars(select(HistoryEntry))] == [
            ("gone@example.org", "DELETE", "")]


def test_a_stopped_intake_refuses_with_store_unavailable(store: Store, spool: Spool) -> None:
    intake = Intake(store, spool)
    future = intake.submit(message(), b"x")  # never started
    with pytest.raises(StoreUnavailable):
        future.result(timeout=5)
    intake.start()
    intake.stop()
    with pytest.raises(StoreUnavailable):
        intake.submit(message(), b"x").result(timeout=5)
    assert spool.all_paths() == [] and count(store, QueueEntry) == 0


def test_a_writer_waits_for_the_one_before_and_then_commits(store: Store, spool: Spool) -> None:
    """Intake commits wait for another writer's transaction (delivery, another receiver) and
    go through once it commits: no 451, no lost message, in that order."""
    if not store.is_sqlite:
        pytest.skip("PostgreSQL has row locks, not one writer")
    intake = Intake(store, spool)
    intake.start()
    try:
        finished: list[float] = []
        with store.transaction() as session:
            session.execute(text("DELETE FROM queue WHERE id < 0"))  # take the write lock
            future = intake.submit(message(), b"x")
            future.add_done_callback(lambda _f: finished.append(time.perf_counter()))
            time.sleep(0.2)  # the intake's commit is blocked meanwhile
            assert not future.done()
            released = time.perf_counter()
        accepted = future.result(timeout=60)
    finally:
        intake.stop()
    assert finished and finished[0] >= released
    assert accepted.queue_ids and count(store, QueueEntry) == 1
