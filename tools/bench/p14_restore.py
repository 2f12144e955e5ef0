"""P14: bulk restore from the trash (trash.restore, as mailTrashRestore) of N deleted entries.

    python tools/bench/p14_restore.py [--n 100000] [--extra 100000] [--runs 3]
        [--backends sqlite,postgresql] [--chunk 5000]

The queue holds N matching entries (recipient domain bulk.test, with real spool bodies) plus
`extra` others. Each run refills the store, deletes the N into the trash (act_on_matching with
trash_by, as mailQueueDeleteBulk does; timed as the reference of the same run), then restores
them all (`to~%@bulk.test` on the trash) and checks every one is back. Reports seconds,
entries per second, the ratio restore / delete, the peak RSS growth while restoring and the
1-minute load average. Target: restore of 100,000 under 20 s.
Writes tools/bench/results/p14_restore.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sqlalchemy import func, select  # noqa: E402

from appliance.db.engine import Store  # noqa: E402
from appliance.db.models import QueueEntry  # noqa: E402
from appliance.db.schema import upgrade  # noqa: E402
from appliance.hql import compile_filter  # noqa: E402
from appliance.queue import trash  # noqa: E402
from appliance.queue.bulk import DEFAULT_CHUNK, act_on_matching  # noqa: E402
from appliance.queue.spool import Spool  # noqa: E402
from tools.bench.p3_data import fill  # noqa: E402
from tools.bench.p4_bulk import PeakRss, _rss_mb, _write_bodies  # noqa: E402

TARGET_S = 20.0
TARGET_N = 100_000


def one_run(url: str, args: argparse.Namespace, spool: Spool) -> dict[str, float]:
    store = Store(url)
    upgrade(store.engine)
    now = time.time()
    spool.root.mkdir(parents=True, exist_ok=True)
    fill(store, args.n, now=now, seed=1, bulk_domain="bulk.test")
    fill(store, args.extra, now=now, seed=2)
    _write_bodies(store, spool)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    deleted = act_on_matching(store, "to~%@bulk.test", "delete", now=now, chunk=args.chunk,
                              trash_by="bench", on_paths=spool.remove_many)
    delete_s = time.perf_counter() - started
    assert deleted == args.n, (deleted, args.n)
    before = _rss_mb()
    with PeakRss() as rss:
        started = time.perf_counter()
        restored = trash.restore(store, compile_filter("to~%@bulk.test", trash=True),
                                 now=time.time(), chunk=args.chunk)
        restore_s = time.perf_counter() - started
    with store.transaction(read_only=True) as session:
        back = session.scalar(select(func.count()).select_from(QueueEntry)
                              .where(QueueEntry.rcpt_domain == "bulk.test"))
        left = trash.count(session, None)
    store.dispose()
    assert restored == args.n and back == args.n and left == 0, (restored, back, left)
    return {"restore_s": restore_s, "per_second": restored / restore_s, "delete_s": delete_s,
            "restore_vs_delete": restore_s / delete_s, "rss_growth_mb": rss.peak - before,
            "load_1m": (load_before + os.getloadavg()[0]) / 2}


def bench(backend: str, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    runs = []
    for i in range(args.runs):
        pg = None
        if backend == "sqlite":
            url = f"sqlite:///{tmp / f'p14-{i}.db'}"
        else:
            from tests.support.postgres import PostgresServer

            pg = PostgresServer(durable=True).start()
            url = pg.create_database("p14")
        try:
            runs.append(one_run(url, args, Spool(tmp / f"spool-{backend}-{i}")))
            r = runs[-1]
            print(f"  run {i + 1}: restore {r['restore_s']:.2f} s (delete {r['delete_s']:.2f} s, "
                  f"{r['restore_vs_delete']:.2f}x), RSS growth {r['rss_growth_mb']:.1f} MB, "
                  f"load {r['load_1m']:.1f}", flush=True)
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
    ap.add_argument("--chunk", type=int, default=DEFAULT_CHUNK)
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="p14-") as tmp:
        for backend in args.backends.split(","):
            print(f"{backend}: {args.runs} runs over {args.n} entries ...", flush=True)
            results[backend] = bench(backend, args, Path(tmp))
    print(f"\n{'backend':11} {'entries':>8} {'restore s':>10} {'/s':>8} {'delete s':>9} "
          f"{'ratio':>6} {'x target':>8} {'RSS MB':>7} {'load 1m':>8}")
    for backend, m in results.items():
        print(f"{backend:11} {args.n:8} {m['restore_s']:10.2f} {m['per_second']:8.0f} "
              f"{m['delete_s']:9.2f} {m['restore_vs_delete']:6.2f} "
              f"{m['restore_s'] * TARGET_N / args.n / TARGET_S:8.2f} {m['rss_growth_mb']:7.1f} "
              f"{m['load_1m']:8.1f}")
    out = REPO / "tools/bench/results/p14_restore.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"when": time.time(), "n": args.n, "extra": args.extra,
                               "runs": args.runs, "chunk": args.chunk, "results": results},
                              indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
