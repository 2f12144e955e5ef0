"""P4: bulk delete and bounce (act_on_matching, as mailQueueDeleteBulk/BounceBulk) over N matching entries.

    python tools/bench/p4_bulk.py [--n 100000] [--extra 100000] [--runs 3] [--backends sqlite,postgresql]
        [--actions delete,bounce] [--chunk 2000] [--bounce-per-entry] [--no-bodies]

The queue holds N matching entries (recipient domain bulk.test) plus `extra` others. Each run
refills the store, then acts on `to~%@bulk.test` in chunks; it reports seconds, entries per
second and the peak RSS growth of the process while acting (memory must stay flat: streamed
chunks) and the 1-minute load average around each run. Bounce uses the batch hook (bounce_all:
one bounce notice per message within a chunk, as mailQueueBounceBulk does) unless
--bounce-per-entry (the per-entry path, which writes each DSN in the call); after the call, the
bounce notifier turns the notices into queued DSNs (group commit, batches of 1,000), timed on
its own ("DSNs s": what housekeeping does after the call returned). Matching entries get real
spool bodies (unless --no-bodies): the DSNs quote their headers and orphaned bodies are
unlinked after each commit, as the node does.
Target (BENCHMARKS.md): under 20 s for 100,000. Writes tools/bench/results/p4_bulk.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


from appliance.bounce.handling import bounce_all, bounce_entry  # noqa: E402
from appliance.bounce.notices import BounceNotifier  # noqa: E402
from appliance.db.engine import Store  # noqa: E402
from appliance.db.schema import upgrade  # noqa: E402
from appliance.queue.bulk import DEFAULT_CHUNK, act_on_matching  # noqa: E402
from appliance.queue.spool import Spool  # noqa: E402
from tools.bench.p3_data import fill  # noqa: E402

TARGET_S = 20.0
TARGET_N = 100_000  # entries the target time is for; smaller runs are scaled linearly


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """Samples this process's RSS every 50 ms while acting (ru_maxrss never goes down)."""

    def __init__(self) -> None:
        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _rss_mb())

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _write_bodies(store: Store, spool: Spool) -> None:
    """A real body for each matching entry (the bounce reads its headers, the delete unlinks
    it), written without fsync: setting up is not what is measured."""
    from sqlalchemy import select

    from appliance.db.models import QueueEntry

    with store.transaction(read_only=True) as session:
        paths = set(session.scalars(select(QueueEntry.path).where(QueueEntry.rcpt_domain == "bulk.test")))
    body = b"From: s@src.test\r\nTo: r@bulk.test\r\nSubject: P4\r\nMessage-ID: <p4@src.test>\r\n\r\n" + b"x" * 1000
    for rel in paths:
        target = spool.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)


def one_run(url: str, action: str, args: argparse.Namespace, spool: Spool) -> dict[str, float]:
    store = Store(url)
    upgrade(store.engine)
    now = time.time()
    spool.root.mkdir(parents=True, exist_ok=True)
    fill(store, args.n, now=now, seed=1, bulk_domain="bulk.test")
    fill(store, args.extra, now=now, seed=2)
    if not args.no_bodies:
        _write_bodies(store, spool)
    # The set-up's writes reach the disk before the clock starts: the kernel's write-back of
    # them would otherwise compete with the measured creates and fsyncs.
    os.sync()
    hooks: dict[str, object] = {}
    if action == "bounce":
        if args.bounce_per_entry:
            hooks["bounce"] = lambda session, entry: bounce_entry(
                session, spool, entry, reason="bulk bounce (P4)", now=now, hostname="bench.test")
        else:
            hooks["bounce_many"] = lambda session, entries: bounce_all(
                session, entries, reason="bulk bounce (P4)", now=now)
    before = _rss_mb()
    load_before = os.getloadavg()[0]
    removed: list[int] = []
    with PeakRss() as rss:
        started = time.perf_counter()
        def on_paths(paths: list[str]) -> None:
            removed.append(len(paths))
            spool.remove_many(paths)  # as the SOAP call does after each chunk's commit

        acted = act_on_matching(store, "to~%@bulk.test", action, now=now, chunk=args.chunk,
                                on_paths=on_paths, **hooks)  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        dsns = BounceNotifier(store, spool, hostname=lambda: "bench.test").tick()
        dsn_seconds = time.perf_counter() - started
    store.dispose()
    assert acted == args.n, (acted, args.n)
    return {"seconds": seconds, "per_second": acted / seconds, "rss_before_mb": before,
            "rss_growth_mb": rss.peak - before, "orphaned_paths": float(sum(removed)),
            "dsns": float(dsns), "dsn_seconds": dsn_seconds,
            "load_1m": (load_before + os.getloadavg()[0]) / 2}


def bench(backend: str, action: str, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    runs = []
    for i in range(args.runs):
        pg = None
        if backend == "sqlite":
            url = f"sqlite:///{tmp / f'p4-{action}-{i}.db'}"
        else:
            from tests.support.postgres import PostgresServer

            pg = PostgresServer(durable=True).start()
            url = pg.create_database("p4")
        try:
            runs.append(one_run(url, action, args, Spool(tmp / f"spool-{backend}-{action}-{i}")))
            print(f"  run {i + 1}: {runs[-1]['seconds']:.2f} s, then {runs[-1]['dsns']:.0f} DSNs "
                  f"in {runs[-1]['dsn_seconds']:.2f} s, RSS growth "
                  f"{runs[-1]['rss_growth_mb']:.1f} MB, load {runs[-1]['load_1m']:.1f}", flush=True)
        finally:
            if pg is not None:
                pg.stop()
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--extra", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--actions", default="delete,bounce")
    ap.add_argument("--chunk", type=int, default=DEFAULT_CHUNK)
    ap.add_argument("--bounce-per-entry", action="store_true", help="the per-entry bounce hook")
    ap.add_argument("--no-bodies", action="store_true",
                    help="no spool bodies for the matching entries (no header reads, no unlinks)")
    args = ap.parse_args()
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="p4-") as tmp:
        for backend in args.backends.split(","):
            for action in args.actions.split(","):
                print(f"{backend} {action}: {args.runs} runs over {args.n} entries ...", flush=True)
                results.setdefault(backend, {})[action] = bench(backend, action, args, Path(tmp))
    print(f"\n{'backend':11} {'action':7} {'entries':>8} {'median s':>9} {'/s':>8} {'x target':>8} {'RSS growth MB':>14} {'DSNs':>7} {'DSNs s':>7} {'load 1m':>8}")
    for backend, by_action in results.items():
        for action, m in by_action.items():
            print(f"{backend:11} {action:7} {args.n:8} {m['seconds']:9.2f} {m['per_second']:8.0f} "
                  f"{m['seconds'] * TARGET_N / args.n / TARGET_S:8.2f} {m['rss_growth_mb']:14.1f} "
                  f"{m['dsns']:7.0f} {m['dsn_seconds']:7.2f} {m['load_1m']:8.1f}")
    out = REPO / "tools/bench/results/p4_bulk.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"when": time.time(), "n": args.n, "extra": args.extra,
                               "runs": args.runs, "chunk": args.chunk,
                               "bounce_per_entry": args.bounce_per_entry, "results": results}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
