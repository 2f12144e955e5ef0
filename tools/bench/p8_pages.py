"""P8 under load: the node's PSS (all processes) while a SOAP client pages through mailQueue.

    python tools/bench/p8_pages.py [--n 1000000] [--pages 300] [--spawn fork|exec]

Fills a SQLite store with `--n` queue entries (tools/bench/p3_data.py), starts a node on it
(`appliance run`, children forked or exec'd), and pages mailQueue over SOAP with zeep (100
entries a page; plain pages at growing offsets, and filtered pages), reading the node's total
PSS every `--every` pages. Prints the samples and the growth from the first sample after
warm-up to the last; writes results/p8_pages.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import shutil
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from p3_data import fill  # noqa: E402
from proctree import pss_kib  # noqa: E402

from appliance.db.engine import Store  # noqa: E402
from appliance.db.schema import upgrade  # noqa: E402

FILTERS = ["", "queue=DEFER", "transport=mx", "to~rcpt1", "subject~w0042"]


def total_mb(pid: int) -> float:
    return sum(kib for _name, kib in pss_kib(pid).values()) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--spawn", choices=("fork", "exec"), default="fork")
    parser.add_argument("--keep", action="store_true",
                        help="keep a copy of the store as filled (its path is printed) for --store")
    parser.add_argument("--store", type=Path, help="a store --keep left (no fill)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="p8-pages-", dir="/var/tmp"))
    try:
        return run(args, base)
    finally:
        if args.keep:
            print(f"kept {base / 'filled.db'} (for --store)")
        else:
            shutil.rmtree(base, ignore_errors=True)


def run(args: argparse.Namespace, base: Path) -> int:
    import requests
    import zeep
    from zeep.transports import Transport

    from tests.support.node import RunningNode

    if args.store is not None:
        shutil.copyfile(args.store, base / "p8.db")
    url = f"sqlite:///{base / 'p8.db'}"
    store = Store(url)
    upgrade(store.engine)
    if args.store is None:
        fill_s = fill(store, args.n, now=time.time())
        print(f"filled {args.n} entries in {fill_s:.0f} s")
    store.dispose()
    if args.keep:  # as filled, before a node has run on it (users, config, node identity)
        shutil.copyfile(base / "p8.db", base / "filled.db")
    samples: list[tuple[int, float]] = []
    with RunningNode(base, database_url=url, extra_args=("--spawn", args.spawn)) as node:
        assert node.proc is not None
        session = requests.Session()
        session.auth = ("admin", node.admin_password)
        client = zeep.Client(node.soap_url + "?wsdl", transport=Transport(session=session))
        idle = total_mb(node.proc.pid)
        step = max(1, args.n // max(1, args.pages))
        for page in range(args.pages):
            hql = FILTERS[page % len(FILTERS)]
            offset = (page * step) % max(1, args.n - 100) if not hql else (page // len(FILTERS)) * 100
            client.service.mailQueue(filter=hql, offset=offset, limit=100)
            if page % args.every == args.every - 1:
                samples.append((page + 1, total_mb(node.proc.pid)))
                print(f"after {page + 1:>5} pages: {samples[-1][1]:.1f} MB")
        for pid, (name, kib) in sorted(pss_kib(node.proc.pid).items()):
            print(f"{pid:>8}  {kib / 1024:>7.1f} MB  {name}")
    warm = samples[0][1]
    last = samples[-1][1]
    result = {"benchmark": "P8 pages", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "n": args.n, "spawn": args.spawn, "idle_mb": idle, "samples": samples,
              "growth_after_warmup_mb": last - warm,
              "median_mb": statistics.median(s for _p, s in samples),
              "load_average": os.getloadavg()}
    print(f"idle {idle:.1f} MB; first sample {warm:.1f} MB, last {last:.1f} MB "
          f"(growth {last - warm:+.1f} MB over {samples[-1][0] - samples[0][0]} pages)")
    out = HERE / "results" / "p8_pages.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
