"""Counters in the store (SQLite and PostgreSQL): flush adds once, patterns, clear, mail actions."""

from __future__ import annotations

import uuid

from appliance.db.engine import Store
from appliance.queue.store import claim, enqueue, record_delivered, write_history
from appliance.stats.counters import Counters, clear_stats, list_stats, sum_counts
from appliance.stats.flusher import StatsFlusher
from appliance.types import Action, Envelope, NewMessage


def _flush(store: Store, counters: Counters, now: float) -> None:
    with store.transaction() as s:
        counters.flush(s, now=now)


def test_one_plus_one_plus_one_is_written_once_as_three(store: Store) -> None:
    c = Counters()
    for _ in range(3):
        c.stat("spam", "inbound", "example.com")
    _flush(store, c, 100.0)
    with store.transaction(read_only=True) as s:
        [row] = list_stats(s, "spam")
    assert (row.key1, row.key2, row.key3, row.count) == ("spam", "inbound", "example.com", 3)
    assert (row.created, row.updated) == (100.0, 100.0)
    c.stat("spam", "inbound", "example.com", n=2)
    _flush(store, c, 200.0)
    _flush(store, c, 300.0)  # nothing pending: nothing changes
    with store.transaction(read_only=True) as s:
        [row] = list_stats(s, "spam")
    assert (row.count, row.created, row.updated) == (5, 100.0, 200.0)


def _seed(store: Store) -> None:
    c = Counters()
    for keys in [("mail:action:deliver", "inbound", "a.example"), ("mail:action:deliver", "out_1", "b.example"),
                 ("mail:action:reject", "inbound", "a.example"), ("custom", "", ""), ("mail:action:deliver", "out11", "x")]:
        c.stat(*keys)
    _flush(store, c, 1.0)


def test_patterns_exact_percent_and_empty(store: Store) -> None:
    _seed(store)
    with store.transaction(read_only=True) as s:
        assert len(list_stats(s)) == 5
        assert [r.key2 for r in list_stats(s, "mail:action:deliver")] == ["inbound", "out11", "out_1"]
        assert [r.key1 for r in list_stats(s, "mail:action:%", "", "a.example")] == [
            "mail:action:deliver", "mail:action:reject"]
        # `_` is literal: out_1 matches, out11 does not.
        assert [r.key2 for r in list_stats(s, "", "out_%")] == ["out_1"]
        assert [r.key1 for r in list_stats(s, "%", "%", "%", offset=3, limit=1)] == ["mail:action:deliver"]
        assert sum_counts(s, "mail:action:deliver") == 3


def test_clear_removes_only_matches_and_says_how_many(store: Store) -> None:
    _seed(store)
    with store.transaction() as s:
        assert clear_stats(s, "mail:action:%", "inbound") == 2
    with store.transaction(read_only=True) as s:
        assert {(r.key1, r.key2) for r in list_stats(s)} == {
            ("mail:action:deliver", "out_1"), ("custom", ""), ("mail:action:deliver", "out11")}


def _message(rcpts: tuple[str, ...]) -> NewMessage:
    return NewMessage(
        msgid=str(uuid.uuid4()), envelope=Envelope(sender="a@s.example", recipients=rcpts, listener="inbound"),
        path="p", size=10, received=1.0,
    )


def test_every_history_row_is_counted_exactly_once(store: Store) -> None:
    with store.transaction() as s:
        enqueue(s, _message(("x@one.example", "y@one.example", "z@Two.example")), now=1.0)
    with store.transaction() as s:
        entries = claim(s, owner="w", now=2.0, lease=60, limit=10)
        for e in entries[:2]:
            record_delivered(s, e.id, owner="w", now=3.0, transfertime=0.1)
        write_history(s, entries[2], Action.REJECT, now=3.0)
    c = Counters()
    flusher = StatsFlusher(store, c, clock=lambda: 10.0)
    assert flusher.flush_once()
    assert flusher.flush_once()  # folded rows are gone: no double count
    with store.transaction(read_only=True) as s:
        got = {(r.key1, r.key2, r.key3): r.count for r in list_stats(s, "mail:action:%")}
    assert got == {("mail:action:deliver", "inbound", "one.example"): 2,
                   ("mail:action:reject", "inbound", "two.example"): 1}


def test_a_failed_flush_keeps_its_counts_and_its_pending_actions(store: Store) -> None:
    with store.transaction() as s:
        enqueue(s, _message(("x@one.example",)), now=1.0)
        [entry] = claim(s, owner="w", now=2.0, lease=60, limit=1)
        record_delivered(s, entry.id, owner="w", now=3.0, transfertime=0.1)
    c = Counters()
    c.stat("k", n=4)

    class Boom(Exception):
        pass

    batch: dict[tuple[str, str, str], int] = {}
    try:
        with store.transaction() as s:
            batch = c.flush(s, now=5.0)
            raise Boom  # the commit never happens
    except Boom:
        c.restore(batch)
    assert c.pending() == {("k", "", ""): 4}
    assert StatsFlusher(store, c, clock=lambda: 6.0).flush_once()
    with store.transaction(read_only=True) as s:
        got = {(r.key1, r.key3): r.count for r in list_stats(s)}
    assert got == {("k", ""): 4, ("mail:action:deliver", "one.example"): 1}


def test_flusher_thread_flushes_on_interval_and_on_stop(store: Store) -> None:
    c = Counters()
    flusher = StatsFlusher(store, c, interval=3600)
    flusher.start()
    c.stat("late")
    flusher.stop()
    with store.transaction(read_only=True) as s:
        assert [r.count for r in list_stats(s, "late")] == [1]
