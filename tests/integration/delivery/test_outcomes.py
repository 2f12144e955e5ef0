"""Recording attempt outcomes on SQLite and PostgreSQL: bulk DELIVER, DEFER, BOUNCE, leases."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import select

from appliance.config.schema import QueueSection
from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, QueueEntry
from appliance.delivery.outcomes import Fate, Outcome, decide, record
from appliance.replies import Reply
from appliance.queue import store as q
from appliance.queue.spool import Spool
from appliance.types import Envelope, NewMessage

QUEUE = QueueSection(retry_schedule=[60, 300], lifetime=3600)


def _enqueue(store: Store, spool: Spool, *rcpts: str, received: float = 1000.0) -> str:
    msgid = str(uuid.uuid4())
    data = b"Subject: s\r\n\r\nbody\r\n"
    path = spool.write(msgid, data)
    with store.transaction() as s:
        q.enqueue(s, NewMessage(
            msgid=msgid, envelope=Envelope(sender="a@s.test", recipients=rcpts), path=path,
            size=len(data), subject="s", received=received, transport="default",
            metadata={"tag": msgid[:8]},
        ), now=received)
    return path


def _claim(store: Store, owner: str = "w", now: float = 1000.0) -> list[QueueEntry]:
    with store.transaction() as s:
        return q.claim(s, owner=owner, now=now, lease=600, limit=100)


def _record(store: Store, spool: Spool, outs: list[Outcome], owner: str = "w") -> tuple[list[Outcome], list[str]]:
    with store.transaction() as s:
        return record(s, spool, outs, owner=owner, now=1010.0, hostname="gw.test")


def test_bulk_delivered_rows_match_the_queue_entries(store: Store, spool: Spool) -> None:
    path1 = _enqueue(store, spool, "x@d.test", "y@d.test")
    path2 = _enqueue(store, spool, "z@d.test")
    claimed = _claim(store)
    outs = [decide(e, Reply(250, "2.0.0 ok"), queue=QUEUE, now=1010.0, transfertime=0.25) for e in claimed]
    written, orphans = _record(store, spool, outs)
    assert len(written) == 3 and sorted(orphans) == sorted([path1, path2])
    with store.transaction(read_only=True) as s:
        assert s.scalars(select(QueueEntry)).all() == []
        hist = s.scalars(select(HistoryEntry).order_by(HistoryEntry.queueid)).all()
        meta = q.metadata_of(s, [h.id for h in hist], history=True)
    assert [(h.queueid, h.rcpt, h.action, h.transfertime, h.error) for h in hist] == [
        (e.id, e.rcpt, "DELIVER", 0.25, "250 2.0.0 ok") for e in claimed]
    assert all(h.ts == 1010.0 and h.ts0 == 1000.0 and h.sender == "a@s.test" for h in hist)
    assert [meta[h.id]["tag"] for h in hist] == [claimed[0].msgid[:8]] * 2 + [claimed[2].msgid[:8]]


def test_mixed_outcomes_keep_a_shared_body_until_the_last_recipient(store: Store, spool: Spool) -> None:
    path = _enqueue(store, spool, "ok@d.test", "later@d.test", "gone@d.test")
    ok, later, gone = _claim(store)
    outs = [
        decide(ok, Reply(250, "ok"), queue=QUEUE, now=1010.0),
        decide(later, Reply(451, "4.3.0 busy"), queue=QUEUE, now=1010.0),
        decide(gone, Reply(550, "5.1.1 unknown"), queue=QUEUE, now=1010.0),
    ]
    assert [o.fate for o in outs] == [Fate.DELIVER, Fate.DEFER, Fate.BOUNCE]
    assert outs[1].next_retry == 1070.0
    _, orphans = _record(store, spool, outs)
    assert orphans == []  # `later` still needs the body
    with store.transaction(read_only=True) as s:
        rows = s.scalars(select(QueueEntry).order_by(QueueEntry.id)).all()
        actions = [(h.rcpt, h.action) for h in s.scalars(select(HistoryEntry).order_by(HistoryEntry.id))]
    deferred, dsn = rows
    assert (deferred.rcpt, deferred.state, deferred.retries, deferred.error, deferred.path) == (
        "later@d.test", "DEFER", 1, "451 4.3.0 busy", path)
    assert (dsn.rcpt, dsn.sender, dsn.is_dsn) == ("a@s.test", "", 1)
    assert sorted(actions) == sorted([("ok@d.test", "DELIVER"), ("later@d.test", "DEFER"), ("gone@d.test", "BOUNCE")])


def test_outcomes_of_lost_leases_are_not_written(store: Store, spool: Spool) -> None:
    _enqueue(store, spool, "x@d.test")
    [mine] = _claim(store, owner="w1")
    with store.transaction() as s:  # w1's lease expired and w2 took the entry
        [theirs] = q.claim(s, owner="w2", now=1700.0, lease=600, limit=1)
    written, orphans = _record(store, spool, [decide(mine, Reply(250, "ok"), queue=QUEUE, now=1010.0)], owner="w1")
    assert written == [] and orphans == []
    with store.transaction(read_only=True) as s:
        assert s.get(QueueEntry, theirs.id).lease_owner == "w2"


def test_expired_entry_bounces_instead_of_deferring(store: Store, spool: Spool) -> None:
    _enqueue(store, spool, "x@d.test", received=time.time() - 7200)
    [entry] = _claim(store, now=time.time())
    out = decide(entry, Reply(0, "connection error: refused"), queue=QUEUE, now=time.time())
    assert out.fate is Fate.BOUNCE and out.status == "4.4.7" and "lifetime" in out.reason


def test_quarantine_holds_the_entry_with_its_body_and_writes_history(store: Store, spool: Spool) -> None:
    path = _enqueue(store, spool, "held@d.test", "ok@d.test")
    held, ok = _claim(store)
    outs = [
        Outcome(entry=held, fate=Fate.QUARANTINE, reply=Reply(0, "policy"), reason="policy", quarantine="pre"),
        decide(ok, Reply(250, "ok"), queue=QUEUE, now=1010.0),
    ]
    written, orphans = _record(store, spool, outs)
    assert len(written) == 2 and orphans == []  # the held entry still needs the body
    assert spool.read(path).startswith(b"Subject: s")
    with store.transaction(read_only=True) as s:
        [entry] = s.scalars(select(QueueEntry)).all()
        hist = {h.rcpt: h for h in s.scalars(select(HistoryEntry))}
        meta = q.metadata_of(s, [entry.id])
    assert (entry.rcpt, entry.state, entry.action, entry.quarantine) == ("held@d.test", "HOLD", "QUARANTINE", "pre")
    assert (entry.lease_owner, entry.lease_until, entry.ts, entry.retries) == ("", 0.0, 1010.0, 0)
    assert meta[entry.id]["tag"] == held.msgid[:8]
    row = hist["held@d.test"]
    assert (row.queueid, row.action, row.quarantine, row.error, row.ts) == (entry.id, "QUARANTINE", "pre", "policy", 1010.0)
    assert hist["ok@d.test"].action == "DELIVER"
    with store.transaction() as s:  # HOLD is not due: no worker takes it again
        assert q.claim(s, owner="w", now=5000.0, lease=600, limit=10) == []


def test_a_scripts_delete_goes_to_the_trash_with_its_body(store: Store, spool: Spool) -> None:
    from appliance.db.models_trash import TrashEntry
    from appliance.hql import compile_filter
    from appliance.queue import trash

    path = _enqueue(store, spool, "gone@d.test", "ok@d.test")
    gone, ok = _claim(store)
    outs = [Outcome(entry=gone, fate=Fate.DELETE, reply=Reply(0, "policy"), reason="deleted by policy"),
            decide(ok, Reply(250, "ok"), queue=QUEUE, now=1010.0)]
    written, orphans = _record(store, spool, outs)
    assert len(written) == 2 and orphans == []  # the trashed entry keeps the body
    with store.transaction(read_only=True) as s:
        [row] = s.scalars(select(TrashEntry)).all()
        actions = sorted((h.rcpt, h.action) for h in s.scalars(select(HistoryEntry)))
    assert (row.id, row.rcpt, row.deletedby, row.deleted, row.path) == (
        gone.id, "gone@d.test", "policy", 1010.0, path)
    assert actions == [("gone@d.test", "DELETE"), ("ok@d.test", "DELIVER")]
    assert trash.restore(store, compile_filter("deletedby=policy", trash=True), now=1020.0) == 1
    with store.transaction(read_only=True) as s:
        [back] = s.scalars(select(QueueEntry)).all()
    assert (back.id, back.lease_owner, back.path) == (gone.id, "", path)
