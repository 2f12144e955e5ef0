"""Group commit (appliance.queue.intake): batching, durability order, failures, shutdown."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, wait

import pytest
from sqlalchemy import event, func, select, text

from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, QueueEntry
from appliance.errors import StoreUnavailable
from appliance.queue.intake import Accepted, Intake
from appliance.queue.spool import Spool
from appliance.types import Envelope, NewMessage
from tests.support.wait import wait_until


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


def test_a_writer_waits_at_the_gate_and_begins_only_after_the_one_before_commits(
        store: Store, spool: Spool) -> None:
    """Intake commits wait for other writers of the node (delivery) at the store's write gate
    (appliance.db.writegate), which lets them in when the writer before commits; left to
    SQLite, a blocked BEGIN IMMEDIATE sleeps in its busy handler (1, 2, 5, 10, ... ms steps).
    Shown by order, not by time: with SQLite's busy timeout at 0, a writer that reached SQLite
    while the lock was held would fail at once."""
    if not store.is_sqlite:
        pytest.skip("PostgreSQL has row locks, not one writer")
    events: list[tuple[str, str]] = []
    event.listen(store.engine, "checkout",
                 lambda dbapi_conn, record, proxy: dbapi_conn.execute("PRAGMA busy_timeout=0"))
    event.listen(store.engine, "begin",  # before the engine's own BEGIN IMMEDIATE
                 lambda conn: events.append(("begin", threading.current_thread().name)), insert=True)
    event.listen(store.engine, "commit",
                 lambda conn: events.append(("commit", threading.current_thread().name)))
    intake = Intake(store, spool)
    intake.start()
    try:
        with _committer_waiting_for_the_lock(store, intake) as future:
            assert not future.done()
        accepted = future.result(timeout=60)
    finally:
        intake.stop()
    me = threading.current_thread().name
    assert events == [("begin", me), ("commit", me),
                      ("begin", "intake-committer"), ("commit", "intake-committer")]
    assert len(accepted.queue_ids) == 1 and count(store, QueueEntry) == 1


def test_what_arrives_while_the_committer_waits_for_the_write_lock_joins_its_transaction(
        store: Store, spool: Spool) -> None:
    """The committer takes its batch once it holds the write lock, not before: five messages
    spooled while another writer holds the lock go in with one commit."""
    if not store.is_sqlite:
        pytest.skip("PostgreSQL has row locks, not one writer")
    intake = Intake(store, spool)
    intake.start()
    try:
        with _committer_waiting_for_the_lock(store, intake) as first:
            rest = [intake.submit(message(), b"x") for _ in range(4)]
            wait_until(lambda: intake.submitted == 5, timeout=30, what="five bodies spooled")
            assert intake.batches == 0
        accepted = [f.result(timeout=60) for f in [first, *rest]]
    finally:
        intake.stop()
    assert intake.batches == 1
    assert len({a.queue_ids[0] for a in accepted}) == 5 and count(store, QueueEntry) == 5


@contextlib.contextmanager
def _committer_waiting_for_the_lock(store: Store, intake: Intake) -> Iterator[Future[Accepted]]:
    """This thread holds SQLite's write lock while the block runs; one message is submitted
    and the committer waits for the lock with it. The lock is let go when the block ends."""
    with store.transaction() as session:
        session.execute(text("DELETE FROM queue WHERE id < 0"))  # take the write lock
        future = intake.submit(message(), b"x")
        wait_until(lambda: _waiting_in_transaction("intake-committer"), timeout=30,
                   what="the intake's commit to wait for the write lock")
        yield future


def _waiting_in_transaction(thread_name: str) -> bool:
    """Whether the named thread is inside Store.transaction (blocked on the writer lock)."""
    thread = next((t for t in threading.enumerate() if t.name == thread_name), None)
    frame = sys._current_frames().get(thread.ident or -1) if thread is not None else None
    code = Store.transaction.__wrapped__.__code__  # type: ignore[attr-defined]
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False
