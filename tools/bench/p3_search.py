"""P3: queue search latency over N entries (default 1,000,000) on SQLite and PostgreSQL.

    python tools/bench/p3_search.py [--n 1000000] [--runs 30] [--backends sqlite,postgresql] [--no-soap]

Measures search() (the domain function mailQueue calls) with limit 100 for messageid=, from=,
to~%@domain, subject~word and time>, and the same over SOAP with zeep against a live node when
the SOAP service is wired. Prints p50/p95 (ms) and the ratio of p50 to the BENCHMARKS.md target
(30 ms indexed, 300 ms subject); writes tools/bench/results/p3_search.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from appliance.db.engine import Store  # noqa: E402
from appliance.db.schema import upgrade  # noqa: E402
from appliance.queue.query import search  # noqa: E402
from tools.bench.p3_data import Probes, fill, probes  # noqa: E402

TARGET_MS = {"subject": 300.0, "subject (no match)": 300.0}


def queries(p: Probes) -> dict[str, str]:
    return {
        "messageid=": f"messageid={p.msgid}",
        "from=": f"from={p.sender}",
        "to~%@domain": f"to~%@{p.rcpt_domain}",
        "subject": f"subject~{p.word}",
        "subject (no match)": "subject~nosuchword",
        "time>": f"time>{int(p.since)}",
    }


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def timed(fn: Callable[[], int], runs: int) -> tuple[float, float, int]:
    fn()  # warm the cache once
    samples, hits = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        hits = fn()
        samples.append((time.perf_counter() - t) * 1000)
    p50, p95 = percentiles(samples)
    return p50, p95, hits


def domain_level(store: Store, qs: dict[str, str], runs: int) -> dict[str, dict[str, float]]:
    out = {}
    for name, hql in qs.items():
        def run(hql: str = hql) -> int:
            with store.transaction(read_only=True) as s:
                return len(search(s, hql, offset=0, limit=100)[0])
        p50, p95, hits = timed(run, runs if "no match" not in name else max(3, runs // 10))
        out[name] = {"p50_ms": p50, "p95_ms": p95, "hits": hits}
    return out


def soap_level(url: str, tmp: Path, qs: dict[str, str], runs: int) -> dict[str, dict[str, float]] | None:
    if not (REPO / "appliance/soap").is_dir() or not (REPO / "tests/support/node.py").exists():
        return None
    import requests
    import zeep
    from zeep.transports import Transport

    from tests.support.node import RunningNode

    with RunningNode(tmp, database_url=url) as node:
        session = requests.Session()
        session.auth = ("admin", node.admin_password)
        client = zeep.Client(node.soap_url + "?wsdl", transport=Transport(session=session))
        out = {}
        for name, hql in qs.items():
            def run(hql: str = hql) -> int:
                result = client.service.mailQueue(filter=hql, offset=0, limit=100)
                items = result["result"] if "result" in result else result
                items = getattr(items, "item", items)  # zeep may keep the <item> wrapper
                return len(items or [])
            p50, p95, hits = timed(run, runs if "no match" not in name else max(3, runs // 10))
            out[name] = {"p50_ms": p50, "p95_ms": p95, "hits": hits}
        return out


def bench_backend(backend: str, n: int, runs: int, soap: bool, tmp: Path) -> dict[str, object]:
    pg = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'p3.db'}"
    else:
        from tests.support.postgres import PostgresServer

        pg = PostgresServer(durable=True).start()
        url = pg.create_database("p3")
    try:
        store = Store(url)
        upgrade(store.engine)
        now = time.time()
        fill_s = fill(store, n, now=now)
        qs = queries(probes(store, now=now))
        result: dict[str, object] = {"n": n, "fill_s": fill_s, "domain": domain_level(store, qs, runs)}
        store.dispose()
        if soap:
            result["soap"] = soap_level(url, tmp / f"node-{backend}", qs, runs)
        return result
    finally:
        if pg is not None:
            pg.stop()


def print_table(results: dict[str, dict[str, object]]) -> None:
    print(f"\n{'backend':11} {'level':7} {'query':20} {'p50 ms':>9} {'p95 ms':>9} {'target':>7} {'p50/target':>10} {'hits':>5}")
    for backend, r in results.items():
        for level in ("domain", "soap"):
            rows = r.get(level)
            if not isinstance(rows, dict):
                continue
            for name, m in rows.items():
                target = TARGET_MS.get(name, 30.0)
                print(f"{backend:11} {level:7} {name:20} {m['p50_ms']:9.2f} {m['p95_ms']:9.2f} "
                      f"{target:7.0f} {m['p50_ms'] / target:10.2f} {m['hits']:5}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--no-soap", action="store_true")
    args = ap.parse_args()
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="p3-") as tmp:
        for backend in args.backends.split(","):
            print(f"{backend}: filling {args.n} entries ...", flush=True)
            results[backend] = bench_backend(backend, args.n, args.runs, not args.no_soap, Path(tmp))
            print(f"{backend}: filled in {results[backend]['fill_s']:.0f} s", flush=True)
    print_table(results)
    out = REPO / "tools/bench/results/p3_search.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"when": time.time(), "results": results}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
