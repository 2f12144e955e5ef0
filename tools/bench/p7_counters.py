"""P7: cost of stat() and rate() calls (ns per call, calls per second; medians of runs).

    python tools/bench/p7_counters.py [--runs 5] [--calls 200000]

References measured in the same run: an empty Python call, a bare dict increment, and stat()
written through to the store per call (what batching avoids). rate() is measured on its two
hot paths (refused: the window is full; counted: below the limit, a new hit queued for the
flusher) and, from 4 threads, on one shared key; the cost of writing the queued hits is
measured apart (a flush of 10,000 hits, in ms). In a node of processes rate() is answered by
the housekeeping process over a UNIX socket (appliance.stats.remote): that round trip is
measured too, with the owner in another process as in a node. Writes tools/bench/results/p7_counters.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from appliance.db.engine import Store  # noqa: E402
from appliance.db.schema import upgrade  # noqa: E402
from appliance.stats.counters import Counters, add_counts  # noqa: E402
from appliance.stats.rates import Rates  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "p7_counters.json"


def per_call(run: Callable[[int], object], calls: int, runs: int) -> float:
    """Median ns per call over `runs` runs of `calls` calls."""
    samples = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        run(calls)
        samples.append((time.perf_counter_ns() - t) / calls)
    return statistics.median(samples)


def loop(fn: Callable[..., object], *args: object) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            fn(*args)
    return run


def threaded(fn: Callable[..., object], threads: int, *args: object) -> Callable[[int], None]:
    def run(n: int) -> None:
        ts = [threading.Thread(target=loop(fn, *args), args=(n // threads,)) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    return run


def lua_loop(stat: Callable[..., None]) -> Callable[[int], None] | None:
    try:
        from lupa import LuaRuntime
    except ImportError:
        return None
    body = LuaRuntime().eval("function(stat, n) for i = 1, n do stat('mail:spam', 'inbound', 'example.com') end end")
    return lambda n: body(stat, n)


def measure(calls: int, runs: int, store: Store) -> dict[str, float]:
    counters = Counters()
    d: dict[tuple[str, str, str], int] = {}
    key = ("mail:spam", "inbound", "example.com")

    def bare(k1: str, k2: str, k3: str) -> None:
        d[(k1, k2, k3)] = d.get((k1, k2, k3), 0) + 1

    def write_through(k1: str, k2: str, k3: str) -> None:
        with store.transaction() as s:
            add_counts(s, {(k1, k2, k3): 1}, now=time.time())

    rates = Rates(store)
    rates.rate("bench", "full", 1, 3600)  # window full: later calls are refused
    allow_n = iter(range(10**9))
    out = {
        "empty call (reference)": per_call(loop(lambda *a: None, *key), calls, runs),
        "dict increment (reference)": per_call(loop(bare, *key), calls, runs),
        "stat() 1 thread": per_call(loop(counters.stat, *key), calls, runs),
        "stat() 4 threads": per_call(threaded(counters.stat, 4, *key), calls, runs),
        "stat() write-through per call (reference)": per_call(loop(write_through, *key), max(200, calls // 500), runs),
        "rate() refused (window full)": per_call(loop(rates.rate, "bench", "full", 1, 3600), calls, runs),
        "rate() counted, one key": per_call(loop(rates.rate, "bench", "open", 10**9, 3600), calls, runs),
        "rate() counted, new key per call": per_call(
            lambda n: [rates.rate("bench", f"e{next(allow_n)}", 100, 3600) for _ in range(n)], calls, runs),
        "rate() 4 threads, one key": per_call(threaded(rates.rate, 4, "bench", "shared", 10**9, 3600), calls, runs),
    }
    flushing = Rates(store)  # a fresh engine: the calls above are not written
    save = []
    for _ in range(runs):
        for i in range(10_000):
            flushing.rate("bench:flush", str(i % 100), 10**9, 3600)
        t = time.perf_counter_ns()
        flushing.save()
        save.append((time.perf_counter_ns() - t) / 1e6)
    out["flush of 10000 rate hits (ms, not ns)"] = statistics.median(save)
    out.update(measure_remote(max(2000, calls // 20), runs, store))
    lua = lua_loop(counters.stat)
    if lua is not None:
        out["stat() from Lua (lupa)"] = per_call(lua, calls, runs)
    flush = []
    for _ in range(runs):
        for i in range(1000):
            counters.stat("bench:flush", str(i))
        t = time.perf_counter_ns()
        with store.transaction() as s:
            counters.flush(s, now=time.time())
        flush.append((time.perf_counter_ns() - t) / 1e6)
    out["flush of 1000 keys (ms, not ns)"] = statistics.median(flush)
    return out


def _serve(url: str, path: str, ready: Any) -> None:
    from appliance.stats.remote import RateServer

    owner = Store(url)
    server = RateServer(Rates(owner), Path(path))
    server.start()
    ready.set()
    threading.Event().wait()  # until terminated


def measure_remote(calls: int, runs: int, store: Store) -> dict[str, float]:
    """rate() as a receiver calls it: the owner (housekeeping) in another process."""
    import multiprocessing

    from appliance.stats.remote import RemoteRates

    path = Path(tempfile.mkdtemp()) / "rates.sock"
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    owner = ctx.Process(target=_serve, args=(store.url, str(path), ready), daemon=True)
    owner.start()
    try:
        ready.wait(60)
        remote = RemoteRates(path)
        remote.rate("bench", "full", 1, 3600)
        out = {
            "rate() remote owner, refused": per_call(loop(remote.rate, "bench", "full", 1, 3600), calls, runs),
            "rate() remote owner, counted": per_call(loop(remote.rate, "bench", "open", 10**9, 3600), calls, runs),
            "rate() remote owner, 4 threads": per_call(threaded(remote.rate, 4, "bench", "shared", 10**9, 3600), calls, runs),
        }
        remote.close()
        return out
    finally:
        owner.terminate()
        owner.join(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        upgrade(store.engine)
        try:
            figures = measure(args.calls, args.runs, store)
        finally:
            store.dispose()
    stat_ns = figures["stat() 1 thread"]
    print(f"{'what':45} {'ns/call':>12} {'calls/s':>14} {'vs stat()':>10}")
    for what, ns in figures.items():
        if what.startswith("flush"):
            print(f"{what:45} {ns:>12.2f} {'':>14} {'':>10}")
            continue
        print(f"{what:45} {ns:>12.0f} {1e9 / ns:>14,.0f} {ns / stat_ns:>9.2f}x")
    verdict = "PASS" if stat_ns < 2000 else "FAIL"
    print(f"P7 target: stat() under 2 us on the hot path -> {stat_ns / 1000:.2f} us: {verdict}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.2f} on {os.cpu_count()} CPUs (the machine is shared)")
    RESULTS.write_text(json.dumps({"runs": args.runs, "calls": args.calls, "median_ns_per_call": figures,
                                   "loadavg": load, "stat_vs_empty_call": stat_ns / figures["empty call (reference)"],
                                   "target_ns": 2000, "verdict": verdict}, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
