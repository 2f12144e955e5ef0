"""rate() in memory with write-behind to the store (SQLite and PostgreSQL): limits, sliding,
threads, restart after a flush, what a crash loses, live listing, clear, prune."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from appliance.db.engine import Store
from appliance.db.models_stats import RateHit
from appliance.errors import InvalidInput
from appliance.stats.counters import Counters
from appliance.stats.flusher import StatsFlusher
from appliance.stats.rates import Rates, clear_rates, list_rates, prune_rates


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _flusher(store: Store, rates: Rates, clock: Clock, **kw: float) -> StatsFlusher:
    return StatsFlusher(store, Counters(), rates=rates, clock=clock, **kw)


def _stored(store: Store) -> int:
    with store.transaction(read_only=True) as s:
        return int(s.scalar(select(func.count()).select_from(RateHit)) or 0)


def test_limits_then_slides(store: Store) -> None:
    clock = Clock(1000.0)
    r = Rates(store, clock=clock)
    assert [r.rate("outbound", "alice", 3, 60) for _ in range(4)] == [True, True, True, False]
    clock.now = 1059.0
    assert not r.rate("outbound", "alice", 3, 60)
    clock.now = 1060.0  # the first three hits (all at 1000) leave the window
    assert r.rate("outbound", "alice", 3, 60)
    assert r.rate("outbound", "bob", 3, 60)  # other entries have their own window
    assert r.rate("outbound", "alice", 3, 61)  # and other intervals
    assert _stored(store) == 0  # nothing written on the hot path


def test_lua_floats_and_bad_arguments(store: Store) -> None:
    r = Rates(store, clock=Clock(1.0))
    assert r.rate("n", "e", 1.0, 60.0) and not r.rate("n", "e", 1, 60)  # type: ignore[arg-type]
    for args in [("", "e", 1, 60), ("n", "e", 0, 60), ("n", "e", 1.5, 60), ("n", 5, 1, 60), ("n", "e", 1, 0)]:
        with pytest.raises(InvalidInput):
            r.rate(*args)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        r.rate("n", "e", 0, 60)  # a known key still checks `count`
    assert r.keys() == 1


def test_threads_never_let_more_than_count_through(store: Store) -> None:
    r = Rates(store, clock=Clock(1.0))
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        mine = [r.rate("ns", "shared", 250, 3600) for _ in range(100)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 250 and len(results) == 800
    assert r.save() == 250 and _stored(store) == 250


def test_limit_survives_a_restart_after_a_flush(store_url: str) -> None:
    clock = Clock(5000.0)
    first = Store(store_url)
    try:
        rates = Rates(first, clock=clock)
        assert all(rates.rate("auth", "1.2.3.4", 3, 600) for _ in range(2))
        assert _flusher(first, rates, clock).flush_once()
        assert rates.rate("auth", "1.2.3.4", 3, 600)  # counted after the last flush: a crash loses it
    finally:
        first.dispose()
    clock.now = 5100.0
    second = Store(store_url)
    try:
        again = Rates(second, clock=clock)
        assert [again.rate("auth", "1.2.3.4", 3, 600) for _ in range(2)] == [True, False]
        assert [(x.entry, x.count) for x in again.list("auth")] == [("1.2.3.4", 3)]
        clock.now = 5600.0  # the two flushed hits (at 5000) have left the window
        assert again.rate("auth", "1.2.3.4", 3, 600)
    finally:
        second.dispose()


def test_stop_writes_what_is_queued(store: Store) -> None:
    clock = Clock(100.0)
    rates = Rates(store, clock=clock)
    flusher = _flusher(store, rates, clock, interval=3600)
    flusher.start()
    assert rates.rate("n", "e", 2, 60) and rates.rate("n", "e", 2, 60)
    assert rates.pending() == 2
    flusher.stop()
    assert rates.pending() == 0 and _stored(store) == 2
    assert not Rates(store, clock=clock).rate("n", "e", 2, 60)


def test_a_failed_flush_keeps_its_hits(store: Store) -> None:
    clock = Clock(100.0)
    rates = Rates(store, clock=clock)
    rates.rate("n", "a", 5, 60)
    rates.rate("n", "b", 5, 60)
    with pytest.raises(RuntimeError):
        with store.transaction() as s:
            written = rates.persist(s)
            assert len(written) == 2 and rates.pending() == 0
            raise RuntimeError("commit fails")
    rates.requeue(written)
    assert rates.pending() == 2 and _stored(store) == 0
    assert rates.save() == 2 and _stored(store) == 2


def test_list_is_live_and_the_stored_copy_follows_a_flush(store: Store) -> None:
    clock = Clock(100.0)
    r = Rates(store, clock=clock)
    for ns, entry in [("outbound", "alice"), ("outbound", "alice"), ("outbound", "bob"), ("inbound", "alice")]:
        r.rate(ns, entry, 5, 60)
    clock.now = 110.0
    live = [(x.entry, x.count, x.interval, x.expires) for x in r.list("outbound")]
    assert live == [("alice", 2, 60, 160.0), ("bob", 1, 60, 160.0)]
    assert [x.entry for x in r.list("outbound", "b%")] == ["bob"]
    assert [x.ns for x in r.list("", "alice", offset=1, limit=1)] == ["outbound"]
    with store.transaction(read_only=True) as s:
        assert list_rates(s, "outbound", now=110.0) == []  # not flushed yet
    r.save()
    with store.transaction(read_only=True) as s:
        assert [(x.entry, x.count, x.interval, x.expires) for x in list_rates(s, "outbound", now=110.0)] == live
        assert [x.entry for x in list_rates(s, "outbound", "b%", now=110.0)] == ["bob"]
        assert list_rates(s, "outbound", now=161.0) == []
    clock.now = 161.0
    assert r.list("outbound") == []
    with pytest.raises(InvalidInput):
        r.list(limit=0)


def test_clear_empties_memory_and_store_and_queued_hits(store: Store) -> None:
    clock = Clock(100.0)
    r = Rates(store, clock=clock)
    assert r.rate("n", "e", 1, 60) and r.rate("n", "f", 1, 60) and r.rate("m", "e", 1, 60)
    r.save()
    assert r.rate("n", "e", 1, 600)  # another interval: a key of its own, queued
    with store.transaction() as s:
        assert r.clear(s, "n", "e") == 2  # both intervals of (n, e)
    assert r.rate("n", "e", 1, 60)  # the block is lifted at once
    assert not r.rate("n", "f", 1, 60)
    r.save()
    with store.transaction(read_only=True) as s:
        rows = [(x.ns, x.entry, x.interval) for x in list_rates(s, "", now=100.0)]
    assert rows == [("m", "e", 60), ("n", "e", 60), ("n", "f", 60)]  # the queued 600 s hit was dropped
    with store.transaction() as s:
        assert r.clear(s, "n", "%") == 2
    assert r.list("n") == [] and [x.ns for x in r.list()] == ["m"]
    assert [x.ns for x in Rates(store, clock=clock).list()] == ["m"]  # what a restart loads


def test_a_rolled_back_clear_puts_memory_back(store: Store) -> None:
    clock = Clock(100.0)
    r = Rates(store, clock=clock)
    assert r.rate("n", "e", 2, 60)
    r.save()
    assert r.rate("n", "e", 2, 60)  # queued, not stored
    with pytest.raises(RuntimeError):
        with store.transaction() as s:
            assert r.clear(s, "n", "e") == 1
            assert r.list("n") == []
            raise RuntimeError("audit fails")
    assert [x.count for x in r.list("n")] == [2] and not r.rate("n", "e", 2, 60)
    r.save()
    assert _stored(store) == 2


def test_store_clear_without_a_node(store: Store) -> None:
    r = Rates(store, clock=Clock(100.0))
    r.rate("outbound", "alice", 5, 60)
    r.rate("outbound", "bob", 5, 60)
    r.save()
    with store.transaction() as s:
        assert clear_rates(s, "outbound", "alice") == 1
    with store.transaction(read_only=True) as s:
        assert [x.entry for x in list_rates(s, "outbound", now=110.0)] == ["bob"]


def test_prune_bounds_memory_and_store(store: Store) -> None:
    clock = Clock(100.0)
    r = Rates(store, clock=clock)
    for i in range(50):
        r.rate("n", f"old{i}", 5, 10)
    r.rate("n", "new", 5, 1000)
    r.save()
    clock.now = 200.0
    assert r.keys() == 51
    assert r.prune() == 50 and r.keys() == 1
    with store.transaction() as s:
        assert prune_rates(s, now=200.0) == 50
    assert _stored(store) == 1 and [x.entry for x in r.list("n")] == ["new"]


def test_the_flusher_prunes_both_on_its_schedule(store: Store) -> None:
    clock = Clock(100.0)
    r = Rates(store, clock=clock)
    flusher = _flusher(store, r, clock, prune_every=60)
    r.rate("n", "old", 5, 10)
    assert flusher.flush_once() and r.keys() == 1 and _stored(store) == 1
    clock.now = 130.0  # expired, but not yet time to prune
    assert flusher.flush_once() and r.keys() == 1
    clock.now = 160.0
    assert flusher.flush_once() and r.keys() == 0 and _stored(store) == 0


def test_hits_counted_while_the_flusher_runs_are_stored_once(store: Store) -> None:
    r = Rates(store)  # the real clock: hits and flushes interleave
    flusher = StatsFlusher(store, Counters(), rates=r, interval=0.01)
    flusher.start()
    allowed: list[bool] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        mine = [r.rate("ns", f"k{j % 7}", 40, 3600) for j in range(150)]
        with lock:
            allowed.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flusher.stop()
    assert allowed.count(True) == 7 * 40 == _stored(store)
    assert sorted((x.entry, x.count) for x in Rates(store).list("ns")) == [(f"k{j}", 40) for j in range(7)]
