"""rate() across processes: one owner serves its windows on a UNIX socket, others ask it."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from appliance.db.engine import Store
from appliance.errors import InvalidInput, StoreUnavailable
from appliance.stats.rates import Rates
from appliance.stats.remote import RateServer, RemoteRates


def _ask_in_another_process(path: str, n: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    rates = RemoteRates(Path(path))
    out.put(sum(rates.rate("conn", "10.0.0.1", 50, 60) for _ in range(n)))
    rates.close()


def test_the_owner_is_authoritative_for_every_asking_process(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "run" / "rates.sock"
    owner = Rates(store)
    server = RateServer(owner, path)
    server.start()
    try:
        ctx = multiprocessing.get_context("spawn")
        out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
        procs = [ctx.Process(target=_ask_in_another_process, args=(str(path), 40, out))
                 for _ in range(3)]
        for p in procs:
            p.start()
        allowed = sum(out.get(timeout=120) for _ in procs)
        for p in procs:
            p.join(60)
        assert allowed == 50  # 120 calls from three processes, one window of 50
        remote = RemoteRates(path)
        [row] = remote.list("conn")
        assert (row.entry, row.count, row.interval) == ("10.0.0.1", 50, 60)
        with store.transaction() as session:
            assert remote.clear(session, "conn") == 1
        assert remote.rate("conn", "10.0.0.1", 50, 60) is True  # cleared in the owner
        with pytest.raises(InvalidInput):
            remote.rate("", "x", 1, 60)
        remote.close()
    finally:
        server.stop()


def test_threads_share_nothing_but_the_owner(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "rates.sock"
    server = RateServer(Rates(store), path)
    server.start()
    try:
        remote = RemoteRates(path)
        results: list[bool] = []
        lock = threading.Lock()

        def hit() -> None:
            for _ in range(25):
                ok = remote.rate("t", "k", 30, 60)
                with lock:
                    results.append(ok)

        threads = [threading.Thread(target=hit) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count(True) == 30 and len(results) == 100
        remote.close()
    finally:
        server.stop()


def test_an_absent_owner_is_a_store_error_not_a_hang(tmp_path: Path) -> None:
    remote = RemoteRates(tmp_path / "nobody.sock", connect_timeout=0.3)
    with pytest.raises(StoreUnavailable):
        remote.rate("a", "b", 1, 60)
