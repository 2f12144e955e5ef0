"""The spool sweep on SQLite and PostgreSQL: orphans past the grace period go, entries whose
body is gone are set aside as ERROR with a history row, and nothing referenced is touched."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance import crashpoint
from appliance.bounce.handling import bounce_all
from appliance.bounce.notices import pending, write_dsns
from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, HistoryMetadata, QueueEntry
from appliance.queue.bulk import act_on_matching
from appliance.queue.spool import Spool
from appliance.queue.store import enqueue
from appliance.queue.sweep import MISSING_BODY, SpoolSweeper, sweep
from appliance.types import Envelope, NewMessage

NOW = 1_800_000_000.0


def _queue(store: Store, spool: Spool, *rcpts: str, metadata: dict[str, str] | None = None) -> str:
    msgid = str(uuid.uuid4())
    path = spool.write(msgid, b"Subject: s\r\n\r\nbody\r\n")
    with store.transaction() as s:
        enqueue(s, NewMessage(msgid=msgid, envelope=Envelope(sender="s@a.test", recipients=rcpts),
                              path=path, size=20, subject="s", received=NOW,
                              metadata=metadata or {}), now=NOW)
    return path


def _age(spool: Spool, rel: str, seconds: float) -> None:
    os.utime(spool.root / rel, (NOW - seconds, NOW - seconds))


def _orphan(spool: Spool, age: float, *, bucket: str | None = None) -> str:
    msgid = str(uuid.uuid4())
    rel = spool.write(msgid, b"never committed")
    if bucket is not None:  # e.g. tmp/: nothing should stay there either
        os.rename(spool.root / rel, spool.root / bucket / f"{msgid}.eml")
        rel = f"{bucket}/{msgid}.eml"
    _age(spool, rel, age)
    return rel


def test_old_orphans_go_young_ones_and_referenced_bodies_stay(store: Store, spool: Spool) -> None:
    kept = _queue(store, spool, "a@b.test")
    _age(spool, kept, 10_000)  # old but referenced
    old = [_orphan(spool, 3_600), _orphan(spool, 7_200), _orphan(spool, 9_000, bucket="tmp")]
    young = _orphan(spool, 10)
    report = sweep(store, spool, now=NOW, grace=600)
    assert (report.orphans_removed, report.set_aside, report.entries_checked) == (3, 0, 1)
    assert not any((spool.root / p).exists() for p in old)
    assert (spool.root / young).exists() and spool.read(kept)
    # Once the young one is past the grace period, it goes too; the referenced body never.
    assert sweep(store, spool, now=NOW + 3_600, grace=600).orphans_removed == 1
    assert spool.all_paths() == [kept]


def test_entries_whose_body_is_missing_are_set_aside_as_error(store: Store, spool: Spool) -> None:
    lost = _queue(store, spool, "x@b.test", "y@b.test", metadata={"tenant": "t1"})
    fine = _queue(store, spool, "z@b.test")
    (spool.root / lost).unlink()
    report = sweep(store, spool, now=NOW, grace=600)
    assert (report.set_aside, report.entries_checked) == (2, 3)
    with store.transaction(read_only=True) as s:
        assert list(s.scalars(select(QueueEntry.path))) == [fine]
        rows = s.scalars(select(HistoryEntry).order_by(HistoryEntry.rcpt)).all()
        meta = s.execute(select(HistoryMetadata.key, HistoryMetadata.value)).all()
    assert [(h.rcpt, h.action, h.error, h.path) for h in rows] == [
        ("x@b.test", "ERROR", MISSING_BODY, lost), ("y@b.test", "ERROR", MISSING_BODY, lost)]
    assert sorted(meta) == [("tenant", "t1"), ("tenant", "t1")]
    assert sweep(store, spool, now=NOW, grace=600).set_aside == 0  # once only


def test_bounce_notices_keep_their_originals_and_a_failed_dsn_batch_leaves_no_body(
        store: Store, spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    originals = {_queue(store, spool, f"r{i}@bulk.test") for i in range(3)}

    def bounce(session: Session, entries: Sequence[QueueEntry]) -> list[str]:
        return bounce_all(session, entries, reason="550 5.7.1 bulk", now=NOW)

    assert act_on_matching(store, "to~%@bulk.test", "bounce", now=NOW, bounce_many=bounce) == 3
    # No entry refers to the bodies any more, but the three notices do: their DSNs quote them.
    assert sweep(store, spool, now=time.time() + 1, grace=0).orphans_removed == 0
    assert set(spool.all_paths()) == originals

    def lost(name: str) -> None:
        if name == "bounce.notices.written":
            raise OSError("the commit never happens")

    monkeypatch.setattr(crashpoint, "reached", lost)
    with pytest.raises(OSError):
        write_dsns(store, spool, now=NOW, hostname="n.test")
    assert pending(store) == 3  # rolled back: the notices stay, no DSN entry
    assert set(spool.all_paths()) == originals  # the DSN bodies removed again (a kill leaves
    # them to the sweep: tests/e2e/queue/test_crash_repair.py)
    monkeypatch.undo()
    queued, orphans = write_dsns(store, spool, now=NOW, hostname="n.test")
    assert (queued, pending(store), sorted(orphans)) == (3, 0, sorted(originals))
    with store.transaction(read_only=True) as s:
        assert sorted(s.scalars(select(QueueEntry.rcpt))) == ["s@a.test"] * 3


def test_a_failed_group_commit_leaves_no_body(spool: Spool) -> None:
    with pytest.raises(RuntimeError):
        with spool.batch() as batch:
            for i in range(5):
                batch.write(f"{i:02x}{uuid.uuid4()}", b"x" * 100)
            raise RuntimeError("insert failed")
    assert spool.all_paths() == []
    with spool.batch() as batch:
        paths = [batch.write(f"{i:02x}{uuid.uuid4()}", b"y") for i in range(5)]
    assert sorted(spool.all_paths()) == sorted(paths)


def test_the_sweeper_sweeps_at_start_and_stops(store: Store, spool: Spool) -> None:
    orphan = _orphan(spool, 10_000)
    sweeper = SpoolSweeper(store, spool, grace=600, interval=3600, clock=lambda: NOW)
    sweeper.start()
    try:
        deadline = time.monotonic() + 30
        while sweeper.last is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sweeper.last is not None and sweeper.last.orphans_removed == 1
    finally:
        assert sweeper.stop()
    assert not (spool.root / orphan).exists()
