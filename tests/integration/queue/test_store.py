"""Queue entries through their life: enqueue, claim, defer, deliver, hold, retry, delete."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, select

from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, HistoryMetadata, QueueEntry, QueueMetadata
from appliance.errors import NotFound
from appliance.queue import store as q
from appliance.types import Envelope, NewMessage, QueueState


def _msg(*rcpts: str, meta: dict[str, str] | None = None) -> NewMessage:
    msgid = str(uuid.uuid4())
    return NewMessage(
        msgid=msgid, path=f"{msgid[:2]}/{msgid}.eml", size=100, subject="hi", received=1000.0,
        envelope=Envelope(sender="A@Example.COM", recipients=rcpts, listener="inbound",
                          client_ip="127.0.0.1", helo="client", sasl="alice"),
        transport="mx", metadata=meta or {},
    )


def test_enqueue_one_entry_per_recipient(store: Store) -> None:
    with store.transaction() as s:
        ids = q.enqueue(s, _msg("x@one.test", "y@Two.Test", meta={"k": "v"}), now=1000.0)
    with store.transaction(read_only=True) as s:
        rows = s.scalars(select(QueueEntry).order_by(QueueEntry.id)).all()
        assert [r.id for r in rows] == ids
        assert [r.rcpt_domain for r in rows] == ["one.test", "two.test"]
        assert rows[0].sender_domain == "example.com"
        assert q.metadata_of(s, ids) == {ids[0]: {"k": "v"}, ids[1]: {"k": "v"}}


def test_enqueue_batch_gives_each_message_its_own_ids_and_rows(store: Store) -> None:
    """One INSERT for a group commit's batch: each message gets the ids of its own rows, in
    recipient order (a recipient given twice included), with its own metadata."""
    messages = [_msg("x@one.test", "y@two.test", meta={"k": "1"}), _msg("z@three.test"),
                _msg("d@dup.test", "d@dup.test", meta={"k": "3", "j": "x"})]
    with store.transaction() as s:
        ids = q.enqueue_batch(s, messages, now=1000.0)
    assert [len(i) for i in ids] == [2, 1, 2]
    assert len({i for group in ids for i in group}) == 5
    with store.transaction(read_only=True) as s:
        for msg, group in zip(messages, ids):
            rows = s.scalars(select(QueueEntry).where(QueueEntry.id.in_(group))
                             .order_by(QueueEntry.id)).all()
            assert [r.id for r in rows] == sorted(group) == group
            assert [(r.msgid, r.rcpt, r.path) for r in rows] == [
                (msg.msgid, rcpt, msg.path) for rcpt in msg.envelope.recipients]
        assert q.metadata_of(s, [i for group in ids for i in group]) == {
            ids[0][0]: {"k": "1"}, ids[0][1]: {"k": "1"},
            ids[2][0]: {"k": "3", "j": "x"}, ids[2][1]: {"k": "3", "j": "x"}}


def test_enqueue_batch_refuses_a_message_without_recipients(store: Store) -> None:
    from appliance.errors import InvalidInput

    with pytest.raises(InvalidInput):
        with store.transaction() as s:
            q.enqueue_batch(s, [_msg("a@x.test"), _msg()], now=1000.0)
    with store.transaction(read_only=True) as s:
        assert s.scalars(select(QueueEntry)).all() == []  # nothing half-queued


def test_claim_leases_exclusively_and_lease_expires(store: Store) -> None:
    with store.transaction() as s:
        q.enqueue(s, _msg("a@x.test", "b@x.test", "c@x.test"), now=1000.0)
    with store.transaction() as s:
        first = q.claim(s, owner="w1", now=1000.0, lease=60, limit=2)
    with store.transaction() as s:
        second = q.claim(s, owner="w2", now=1000.0, lease=60, limit=5)
    assert len(first) == 2 and len(second) == 1
    assert not {e.id for e in first} & {e.id for e in second}
    with store.transaction() as s:
        assert q.claim(s, owner="w3", now=1001.0, lease=60, limit=5) == []
        # w1 died: after its lease the entries are due again.
        again = q.claim(s, owner="w3", now=1061.0, lease=60, limit=5)
    assert len(again) == 3


def test_defer_then_deliver_writes_history(store: Store) -> None:
    with store.transaction() as s:
        [eid] = q.enqueue(s, _msg("a@x.test", meta={"tag": "t1"}), now=1000.0)
        [e] = q.claim(s, owner="w", now=1000.0, lease=60, limit=1)
        q.record_deferred(s, e.id, owner="w", now=1001.0, error="451 later", next_retry=1100.0)
    with store.transaction() as s:
        assert q.claim(s, owner="w", now=1050.0, lease=60, limit=1) == []
        [e] = q.claim(s, owner="w", now=1100.0, lease=60, limit=1)
        assert e.retries == 1 and e.error == "451 later"
        orphan = q.record_delivered(s, e.id, owner="w", now=1101.0, transfertime=0.5, response="250 ok")
    assert orphan == e.path
    with store.transaction(read_only=True) as s:
        assert s.scalars(select(QueueEntry)).all() == []
        hist = s.scalars(select(HistoryEntry).order_by(HistoryEntry.id)).all()
        assert [h.action for h in hist] == ["DEFER", "DELIVER"]
        assert hist[1].queueid == eid and hist[1].transfertime == 0.5
        assert s.scalars(select(HistoryMetadata.value)).all() == ["t1", "t1"]


def test_outcome_of_a_stolen_lease_is_ignored(store: Store) -> None:
    with store.transaction() as s:
        q.enqueue(s, _msg("a@x.test"), now=1000.0)
        [e] = q.claim(s, owner="w1", now=1000.0, lease=10, limit=1)
        [e2] = q.claim(s, owner="w2", now=1011.0, lease=10, limit=1)
        assert q.record_delivered(s, e.id, owner="w1", now=1012.0, transfertime=1) is None
        assert s.get(QueueEntry, e2.id) is not None


def test_hold_retry_duplicate_delete(store: Store) -> None:
    with store.transaction() as s:
        [eid] = q.enqueue(s, _msg("a@x.test", meta={"k": "v"}), now=1000.0)
        q.hold(s, eid, now=1001.0)
        assert q.claim(s, owner="w", now=1002.0, lease=60, limit=5) == []
        dup = q.retry(s, eid, now=1003.0, duplicate=True)
        assert dup != eid and s.get(QueueEntry, eid).state == QueueState.HOLD.value
        assert q.metadata_of(s, [dup]) == {dup: {"k": "v"}}
        q.retry(s, eid, now=1004.0)
        assert s.get(QueueEntry, eid).state == QueueState.ACTIVE.value
        assert q.delete(s, eid, now=1005.0) is None  # the duplicate still uses the file
        path = q.delete(s, dup, now=1006.0)
        assert path is not None
        with pytest.raises(NotFound):
            q.hold(s, eid, now=1007.0)


def test_restriction_hides_entries(store: Store) -> None:
    with store.transaction() as s:
        [eid] = q.enqueue(s, _msg("a@x.test"), now=1000.0)
        with pytest.raises(NotFound):
            q.delete(s, eid, now=1001.0, where=QueueEntry.rcpt_domain == "other.test")
        assert s.get(QueueEntry, eid) is not None


def test_release_all_leases_at_start(store: Store) -> None:
    with store.transaction() as s:
        q.enqueue(s, _msg("a@x.test", "b@x.test"), now=1000.0)
        q.claim(s, owner="dead", now=1000.0, lease=3600, limit=5)
    with store.transaction() as s:
        assert q.release_all_leases(s) == 2
        assert len(q.claim(s, owner="w", now=1001.0, lease=60, limit=5)) == 2


def test_queue_ids_are_never_reused(store: Store) -> None:
    with store.transaction() as s:
        [first] = q.enqueue(s, _msg("a@x.test"), now=1000.0)
        q.delete(s, first, now=1001.0)
    with store.transaction() as s:
        [second] = q.enqueue(s, _msg("b@x.test"), now=1002.0)
    assert second > first


def test_message_metadata_is_set_on_every_entry_lacking_it(store: Store) -> None:
    one, other = _msg("a@x.test", "b@y.test"), _msg("c@x.test")
    with store.transaction() as s:
        first, second = q.enqueue(s, one, now=1000.0)
        third = q.enqueue(s, other, now=1000.0)[0]
        q.set_message_metadata(s, {one.msgid: "kept"}, "sig")
        s.execute(delete(QueueMetadata).where(QueueMetadata.entry_id == second))
    with store.transaction() as s:
        # The entry that lost it gets the new value; the one holding it keeps its own; another
        # message and a msgid no longer queued are left alone.
        q.set_message_metadata(s, {one.msgid: "new", "gone-msgid": "x"}, "sig")
    with store.transaction(read_only=True) as s:
        meta = q.metadata_of(s, [first, second, third])
        assert meta == {first: {"sig": "kept"}, second: {"sig": "new"}}
        assert q.message_metadata(s, [one.msgid, other.msgid], "sig")[one.msgid] in ("kept", "new")
