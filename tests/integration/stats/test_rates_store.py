"""rate() against the store (SQLite and PostgreSQL): limits, restart, shared workers, list, clear."""

from __future__ import annotations

import threading

from appliance.db.engine import Store
from appliance.stats.rates import Rates, clear_rates, list_rates, prune_rates


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_limits_then_slides(store: Store) -> None:
    clock = Clock(1000.0)
    r = Rates(store, clock=clock)
    assert [r.rate("outbound", "alice", 3, 60) for _ in range(4)] == [True, True, True, False]
    clock.now = 1059.0
    assert not r.rate("outbound", "alice", 3, 60)
    clock.now = 1060.0  # the first three hits (all at 1000) leave the window
    assert r.rate("outbound", "alice", 3, 60)
    assert r.rate("outbound", "bob", 3, 60)  # other entries have their own window


def test_limit_survives_a_restart(store_url: str) -> None:
    clock = Clock(5000.0)
    first = Store(store_url)
    try:
        assert all(Rates(first, clock=clock).rate("auth", "1.2.3.4", 2, 600) for _ in range(2))
    finally:
        first.dispose()
    clock.now = 5100.0
    second = Store(store_url)
    try:
        assert not Rates(second, clock=clock).rate("auth", "1.2.3.4", 2, 600)
    finally:
        second.dispose()


def test_workers_and_processes_share_one_limit(store: Store) -> None:
    clock = Clock(1.0)
    engines = [Rates(store, clock=clock), Rates(store, clock=clock)]  # two "processes"
    results: list[bool] = []
    lock = threading.Lock()

    def worker(rates: Rates) -> None:
        for _ in range(10):
            ok = rates.rate("ns", "shared", 25, 3600)
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=worker, args=(engines[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 25 and len(results) == 60


def test_list_shows_live_windows_and_clear_forgets_them(store: Store) -> None:
    clock = Clock(100.0)
    r = Rates(store, clock=clock)
    r.rate("outbound", "alice", 5, 60)
    r.rate("outbound", "alice", 5, 60)
    r.rate("outbound", "bob", 5, 60)
    r.rate("inbound", "alice", 5, 60)
    with store.transaction(read_only=True) as s:
        rows = list_rates(s, "outbound", now=110.0)
        assert [(x.entry, x.count, x.interval, x.expires) for x in rows] == [
            ("alice", 2, 60, 160.0), ("bob", 1, 60, 160.0)]
        assert [x.entry for x in list_rates(s, "outbound", "b%", now=110.0)] == ["bob"]
        assert list_rates(s, "outbound", now=161.0) == []
        assert [x.ns for x in list_rates(s, "", "alice", offset=1, limit=1, now=110.0)] == ["outbound"]
    with store.transaction() as s:
        assert clear_rates(s, "outbound", "alice") == 1
    with store.transaction(read_only=True) as s:
        assert [x.entry for x in list_rates(s, "outbound", now=110.0)] == ["bob"]


def test_clear_lifts_a_block_remembered_in_memory(store: Store) -> None:
    clock = Clock(100.0)
    r = Rates(store, clock=clock, cache_ttl=3600)
    assert r.rate("n", "e", 1, 60)
    assert not r.rate("n", "e", 1, 60)
    with store.transaction() as s:
        assert r.clear(s, "n", "e") == 1
    assert r.rate("n", "e", 1, 60)


def test_prune_drops_expired_keys(store: Store) -> None:
    r = Rates(store, clock=Clock(100.0))
    r.rate("n", "old", 5, 10)
    r.rate("n", "new", 5, 1000)
    with store.transaction() as s:
        assert prune_rates(s, now=200.0) == 1
    with store.transaction(read_only=True) as s:
        assert [x.entry for x in list_rates(s, "n", now=200.0)] == ["new"]
