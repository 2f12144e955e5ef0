"""P6: one call to 8 nodes through the fan-out client vs the slowest single node vs plain zeep in turn.

    python tools/bench/p6_fanout.py [--nodes 8] [--rounds 20] [--delay 0.05]

Starts N real nodes on loopback (each with its own data dir and a few queued messages). Each node
is reached through a TCP proxy that adds `--delay` seconds before the first byte of a connection
(a stand-in for network distance; 0 disables the proxies), so a sequential client pays it N times.
Measures, per round (medians over rounds): the fan-out round of `--operation` to every node; the
same call to the slowest node alone through the same client; and the same calls made one after
another with a plain zeep client. All nodes share this machine's cores, so a call with real server
work (mailQueue) also measures the nodes competing for CPU, which separate machines would not. Writes tools/bench/results/p6_fanout.json.
"""

from __future__ import annotations

import argparse
import json
import smtplib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
import zeep  # noqa: E402

from appliance_client.cluster import Cluster  # noqa: E402
from appliance_client.node import NodeSpec  # noqa: E402
from tests.support.node import RunningNode  # noqa: E402
from tests.support.proxy import DelayProxy  # noqa: E402

RESULTS = ROOT / "tools" / "bench" / "results" / "p6_fanout.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--delay", type=float, default=0.02, help="latency added to each request, seconds")
    ap.add_argument("--operation", choices=("getSerial", "mailQueue"), default="mailQueue",
                    help="getSerial: almost no server work; mailQueue: 20 items per node")
    args = ap.parse_args()
    nodes: list[RunningNode] = []
    proxies: list[DelayProxy] = []
    try:
        for i in range(args.nodes):
            node = RunningNode(Path(tempfile.mkdtemp(prefix=f"p6-n{i}-")), relay=("127.0.0.1", 9)).start()
            nodes.append(node)
            with smtplib.SMTP("127.0.0.1", node.smtp_port) as smtp:
                for j in range(20):
                    smtp.sendmail("a@bench.test", [f"r{j}@d{i}.test"], b"Subject: p6\r\n\r\nx\r\n")
        urls = []
        for node in nodes:
            if args.delay > 0:
                proxy = DelayProxy(node.soap_port, args.delay, every_request=True)
                proxies.append(proxy)
                urls.append(f"http://127.0.0.1:{proxy.port}/remote/")
            else:
                urls.append(node.soap_url)
        specs = [NodeSpec(url=u, username="admin", password=n.admin_password, name=f"n{i}")
                 for i, (u, n) in enumerate(zip(urls, nodes))]
        wsdl = Path(tempfile.mkdtemp()) / "appliance.wsdl"
        wsdl.write_bytes(requests.get(nodes[0].soap_url + "?wsdl",
                                      auth=("admin", nodes[0].admin_password), timeout=30).content)
        cluster = Cluster(specs, wsdl_source=str(wsdl))
        op = args.operation
        kwargs = {"filter": "", "offset": 0, "limit": 100} if op == "mailQueue" else {}
        cluster.call(op, **kwargs)  # warm: connections and server-side caches
        fan, single, seq = [], [], []
        sessions = []
        for spec in specs:
            s = requests.Session()
            s.auth = (spec.username, spec.password)
            sessions.append(zeep.Client(str(wsdl), transport=zeep.Transport(session=s)))
        services = [c.create_service(c.service._binding.name, spec.url) for c, spec in zip(sessions, specs)]
        for svc in services:
            getattr(svc, op)(**kwargs)
        for _ in range(args.rounds):
            t = time.perf_counter()
            result = cluster.call(op, **kwargs)
            fan.append(time.perf_counter() - t)
            assert not result.errors, result.errors
            per_node = []
            for spec in specs:
                t = time.perf_counter()
                one = cluster.call_each({spec.label: kwargs}, op)
                per_node.append(time.perf_counter() - t)
                assert not one.errors
            single.append(max(per_node))
            t = time.perf_counter()
            for svc in services:
                getattr(svc, op)(**kwargs)
            seq.append(time.perf_counter() - t)
        cluster.close()
        med = {k: statistics.median(v) for k, v in (("fanout", fan), ("slowest_single", single),
                                                     ("sequential_zeep", seq))}
        report = {
            "nodes": args.nodes, "rounds": args.rounds, "delay_s": args.delay, "operation": op,
            "median_s": med,
            "fanout_vs_slowest_single": med["fanout"] / med["slowest_single"],
            "sequential_vs_fanout": med["sequential_zeep"] / med["fanout"],
        }
        print(f"{'':24}{'median ms':>10}")
        for k, v in med.items():
            print(f"{k:24}{v * 1000:10.1f}")
        print(f"fan-out / slowest single node: {report['fanout_vs_slowest_single']:.2f}x (target <= 1.2)")
        print(f"sequential zeep / fan-out:     {report['sequential_vs_fanout']:.2f}x (target >= 5)")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2))
    finally:
        for proxy in proxies:
            proxy.close()
        for node in nodes:
            node.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
