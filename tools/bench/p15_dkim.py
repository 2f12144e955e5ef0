"""DKIM signing cost: microseconds per message (1 KiB and 10 KiB, RSA 2048 and Ed25519), and
P2-style delivery throughput with signing off, RSA and Ed25519 in the same run.

    python tools/bench/p15_dkim.py [--signs 300] [--messages 3000] [--runs 3] [--no-delivery]

Signing is done in delivery (once per message, on its first attempt), not at ingest, so P1's
ingest path does not change with signing on; the delivery figure is the one signing can move.
Per-message cost goes through the node's own Signer (header parse, canonicalization, body hash,
the private-key operation); dkimpy's own dkim.sign() is measured beside it as the reference.
Medians of the runs; ratios against signing off (delivery) and dkimpy (signing) from the same
run. JSON goes to tools/bench/results/p15_dkim.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dkim  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

from appliance.config.schema import Config, DkimSection, NodeSection, QueueSection, Transport  # noqa: E402
from appliance.db.engine import Store  # noqa: E402
from appliance.db.schema import upgrade  # noqa: E402
from appliance.delivery.service import DeliveryService  # noqa: E402
from appliance.mailauth.keys import KeyStore  # noqa: E402
from appliance.mailauth.sign import Signer  # noqa: E402
from appliance.policy.flow import DefaultFlow  # noqa: E402
from appliance.queue import store as q  # noqa: E402
from appliance.queue.spool import Spool  # noqa: E402
from p2_delivery import SinkProcess, _message, fill_queue  # noqa: E402

SIZES = {"1KiB": 1024, "10KiB": 10 * 1024}
VARIANTS = ("off", "rsa", "ed25519")


def _keys(root: Path) -> KeyStore:
    keys = KeyStore(root)
    keys.create("bench.test", "rsa", "rsa")
    keys.create("bench.test", "ed25519", "ed25519")
    return keys


def _cfg(variant: str) -> DkimSection:
    if variant == "off":
        return DkimSection(enabled=False)
    return DkimSection(domains={"bench.test": {"selector": variant}})  # type: ignore[dict-item]


def signing_costs(keys: KeyStore, signs: int) -> dict[str, float]:
    """µs per signature: ours per algorithm and size, and dkimpy's dkim.sign() for reference."""
    signer = Signer(keys)
    out: dict[str, float] = {}
    for size_name, size in SIZES.items():
        message = _message(size)
        for algorithm in ("rsa", "ed25519"):
            cfg = _cfg(algorithm)
            signer.signature(message, choice=None, is_dsn=False, cfg=cfg, now=time.time())  # warm the key cache
            started = time.perf_counter()
            for _ in range(signs):
                signer.signature(message, choice=None, is_dsn=False, cfg=cfg, now=time.time())
            out[f"ours_{algorithm}_{size_name}_us"] = (time.perf_counter() - started) / signs * 1e6
        pem = keys.load("bench.test", "rsa").key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption())
        n = max(10, signs // 10)  # dkimpy's RSA is slow: fewer rounds
        started = time.perf_counter()
        for _ in range(n):
            dkim.sign(message, b"rsa", b"bench.test", pem)
        out[f"dkimpy_rsa_{size_name}_us"] = (time.perf_counter() - started) / n * 1e6
    return out


def delivery_run(args: argparse.Namespace, workdir: Path, keys: KeyStore, variant: str) -> dict[str, float]:
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    store = Store(f"sqlite:///{run_dir / 'store.db'}")
    upgrade(store.engine)
    spool = Spool(run_dir / "spool")
    fill_queue(store, spool, args.messages, args.size)
    sink = SinkProcess(workdir)
    config = Config(
        node=NodeSection(hostname="bench.test"),
        transports=[Transport(id="default", nexthop=f"127.0.0.1:{sink.port}", starttls="none",
                              max_connections=args.connections, max_messages_per_connection=1000)],
        queue=QueueSection(workers=args.workers, poll_interval=0.05),
        dkim=_cfg(variant),
    )

    async def deliver() -> float:
        service = DeliveryService(store=store, spool=spool, config=lambda: config, flow=DefaultFlow(),
                                  signer=Signer(keys))
        started = time.monotonic()
        await service.start()
        while True:
            if sink.counts()[0] >= args.messages:
                with store.transaction(read_only=True) as s:
                    if not sum(q.counts_by_state(s).values()):
                        break
            if time.monotonic() - started > args.timeout:
                raise TimeoutError(f"{variant}: {sink.counts()[0]} of {args.messages} delivered in time")
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - started
        await service.stop()
        return elapsed

    try:
        load_before = os.getloadavg()[0]
        elapsed = asyncio.run(deliver())
    finally:
        sink.stop()
        store.dispose()
    return {"seconds": elapsed, "msgs_per_s": args.messages / elapsed, "load_before": load_before,
            "load_after": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--signs", type=int, default=300, help="signatures per cost measurement")
    ap.add_argument("--messages", type=int, default=3000, help="queue size per delivery run")
    ap.add_argument("--size", type=int, default=1024, help="message size for delivery runs")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--no-delivery", action="store_true", help="only the per-message costs")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="p15-") as tmp:
        keys = _keys(Path(tmp) / "keys" / "dkim")
        costs = [signing_costs(keys, args.signs) for _ in range(args.runs)]
        delivery: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
        if not args.no_delivery:
            for _ in range(args.runs):  # interleaved so that machine noise hits each alike
                for variant in VARIANTS:
                    delivery[variant].append(delivery_run(args, Path(tmp), keys, variant))
    cost = {k: statistics.median(c[k] for c in costs) for k in costs[0]}
    rates = {v: statistics.median(r["msgs_per_s"] for r in runs) for v, runs in delivery.items() if runs}
    print(f"{'signature':<22}{'1KiB µs':>12}{'10KiB µs':>12}")
    for who in ("ours_rsa", "ours_ed25519", "dkimpy_rsa"):
        print(f"{who:<22}{cost[f'{who}_1KiB_us']:>12.0f}{cost[f'{who}_10KiB_us']:>12.0f}")
    ratios: dict[str, float] = {}
    if rates:
        print(f"\ndelivery of {args.messages} x {args.size} B, medians of {args.runs} (msg/s):")
        for variant, rate in rates.items():
            ratios[variant] = rate / rates["off"]
            print(f"  signing {variant:<8}{rate:>10.0f}   {ratios[variant]:.2f}x of off")
    result = {
        "benchmark": "p15_dkim", "host": platform.node(), "cpus": os.cpu_count(),
        "args": vars(args), "signing_us": cost, "signing_runs": costs,
        "delivery_msgs_per_s": rates, "delivery_ratio_vs_off": ratios, "delivery_runs": delivery,
    }
    out = REPO / "tools" / "bench" / "results" / "p15_dkim.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
