"""Suspensions in the store: claims skip what they hold, filters compile once per change,
expiry and removal release the held entries spread over the interval, events are written."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.errors import Conflict, FilterError, InvalidInput
from appliance.queue import events, suspend
from appliance.queue import store as q
from appliance.types import Envelope, NewMessage


def _queue(store: Store, *rcpts: str, now: float = 1000.0) -> list[int]:
    msgid = str(uuid.uuid4())
    msg = NewMessage(msgid=msgid, path=f"{msgid[:2]}/{msgid}.eml", size=10, received=now,
                     envelope=Envelope(sender="s@src.test", recipients=rcpts), transport="default")
    with store.transaction() as s:
        return q.enqueue(s, msg, now=now)


def _claim(store: Store, holds: suspend.Holds, now: float, *, spread: float = 60.0) -> list[str]:
    """One delivery round: what it leases is delivered at once."""
    with store.transaction() as s:
        holds.refresh(s, now=now, spread=spread)
        taken = q.claim(s, owner=f"w{now}", now=now, lease=1, limit=100, exclude=holds.exclusion())
        rcpts = [e.rcpt for e in taken]
        for e in taken:
            q.record_delivered(s, e.id, owner=f"w{now}", now=now, transfertime=0.0)
        return rcpts


def test_claim_skips_held_entries_until_expiry_spreads_them(store: Store) -> None:
    _queue(store, "a@dst.test", "b@dst.test", "c@dst.test", "x@other.test")
    with store.transaction() as s:
        row = suspend.create(s, filter="to~%@dst.test", ttl=100, reason="down", author="ops", now=1000.0)
    holds = suspend.Holds()
    assert _claim(store, holds, 1001.0) == ["x@other.test"]
    assert _claim(store, holds, 1050.0) == []  # nothing else; held ones are not leased
    assert holds.compilations == 1
    with store.transaction(read_only=True) as s:
        (listed, held), = suspend.listing(s, now=1050.0)
        assert (listed.id, held) == (row.id, 3)
        assert [e.retries for e in s.scalars(select(QueueEntry).where(QueueEntry.rcpt_domain == "dst.test"))] == [0, 0, 0]
    # At 1100 it expires: released over 60 s, one every 20 s, the first at once.
    assert _claim(store, holds, 1100.0) == ["a@dst.test"]
    assert holds.compilations == 2
    assert _claim(store, holds, 1119.0) == []
    assert _claim(store, holds, 1120.0) == ["b@dst.test"]
    assert _claim(store, holds, 1140.0) == ["c@dst.test"]
    with store.transaction(read_only=True) as s:
        assert [(r.state, n) for r, n in suspend.listing(s, now=1200.0, include_ended=True)] == [("expired", 0)]
    with store.transaction(read_only=True) as s:
        msgid = s.scalars(select(QueueEntry.msgid)).first()
    assert msgid is None  # every entry delivered


def test_new_mail_is_marked_and_removal_releases(store: Store) -> None:
    with store.transaction() as s:
        suspend.create(s, filter="to~%@dst.test", ttl=1000, reason="", author="ops", now=1000.0,
                       suspension_id="s1")
    holds = suspend.Holds()
    ids = _queue(store, "n@dst.test", "o@ok.test", now=1001.0)
    with store.transaction() as s:
        holds.refresh(s, now=1001.0)
        holds.mark_new(s, ids, now=1001.0)
    with store.transaction() as s:
        assert [e.queueid for e in events.timeline(s, s.get(QueueEntry, ids[0]).msgid)
                if e.kind == "suspended"] == [ids[0]]
        assert suspend.remove(s, "s1", now=1002.0, spread=0) == 1
    with store.transaction() as s:
        with pytest.raises(Conflict):
            suspend.remove(s, "s1", now=1003.0, spread=0)
    assert sorted(_claim(store, suspend.Holds(), 1003.0)) == ["n@dst.test", "o@ok.test"]


def test_bad_suspensions_are_refused_and_change_nothing(store: Store) -> None:
    with store.transaction() as s:
        with pytest.raises(FilterError):
            suspend.create(s, filter="to~", ttl=10, reason="", author="a", now=0.0)
        with pytest.raises(InvalidInput):
            suspend.create(s, filter="to~x", ttl=0, reason="", author="a", now=0.0)
        with pytest.raises(InvalidInput):
            suspend.create(s, filter="   ", ttl=10, reason="", author="a", now=0.0)
        with pytest.raises(InvalidInput):
            suspend.create(s, filter="to~x", ttl=10, reason="", author="a", now=0.0, suspension_id="a b")
        suspend.create(s, filter="to~x", ttl=10, reason="", author="a", now=0.0, suspension_id="one")
        with pytest.raises(Conflict):
            suspend.create(s, filter="to~y", ttl=10, reason="", author="a", now=0.0, suspension_id="one")
    with store.transaction(read_only=True) as s:
        assert [r.id for r, _ in suspend.listing(s, now=1.0)] == ["one"]


def test_old_events_and_ended_suspensions_are_purged(store: Store) -> None:
    from appliance.queue.retention import purge

    with store.transaction() as s:
        events.add(s, [events.Event(msgid="m", kind="queued", ts=float(t)) for t in (10, 20, 30)])
        suspend.create(s, filter="to~x", ttl=5, reason="", author="a", now=0.0, suspension_id="old")
        suspend.create(s, filter="to~y", ttl=500, reason="", author="a", now=0.0, suspension_id="live")
        suspend.expire_due(s, now=6.0, spread=0)
    assert purge(store, before=25.0) == 2
    with store.transaction(read_only=True) as s:
        assert [e.ts for e in events.timeline(s, "m")] == [30.0]
        assert [r.id for r, _ in suspend.listing(s, now=7.0, include_ended=True)] == ["live"]
