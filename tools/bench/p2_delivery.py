"""P2 — delivery: a queue of N messages delivered to an SMTP sink on loopback, messages per
second and connections used, side by side with Debian's Postfix relaying from a full queue.

    python tools/bench/p2_delivery.py [--messages 20000] [--runs 3] [--no-postfix]

Medians of the runs; the ratio is ours / Postfix's, measured in the same run. JSON goes to
tools/bench/results/p2_delivery.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from appliance.config.schema import Config, NodeSection, QueueSection, Transport  # noqa: E402
from appliance.db.engine import Store  # noqa: E402
from appliance.db.schema import upgrade  # noqa: E402
from appliance.delivery.service import DeliveryService  # noqa: E402
from appliance.policy.flow import DefaultFlow  # noqa: E402
from appliance.queue import store as q  # noqa: E402
from appliance.queue.spool import Spool  # noqa: E402
from appliance.types import Envelope, NewMessage  # noqa: E402
from p2_postfix import PostfixRelay, available  # noqa: E402
from tests.support.postgres import free_port  # noqa: E402


class SinkProcess:
    """tools/bench/p2_sink.py in its own process; counts read from its status file."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.status = workdir / f"sink-{self.port}.status"
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("p2_sink.py")),
                                      str(self.port), str(self.status)])
        deadline = time.monotonic() + 10
        while not self.status.exists():  # written once the socket listens
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("sink did not start")
            time.sleep(0.02)

    def counts(self) -> tuple[int, int]:
        try:
            messages, connections = self.status.read_text().split()
        except (FileNotFoundError, ValueError):
            return 0, 0
        return int(messages), int(connections)

    def wait_for(self, n: int, deadline: float) -> None:
        while self.counts()[0] < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"sink got {self.counts()[0]} of {n} messages in time")
            time.sleep(0.02)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _message(size: int) -> bytes:
    head = f"From: sender@bench.test\r\nTo: rcpt@sink.test\r\nSubject: p2\r\nMessage-ID: <{uuid.uuid4()}@bench.test>\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head.encode() + body


def _spool_fast(spool: Spool, msgid: str, data: bytes) -> str:
    """Spool.write's layout without its fsyncs: filling the queue is set-up, not measured
    (Postfix's queue is filled over SMTP beforehand too)."""
    rel = f"{msgid[:2]}/{msgid}.eml"
    (spool.root / rel).parent.mkdir(exist_ok=True)
    (spool.root / rel).write_bytes(data)
    return rel


def fill_queue(store: Store, spool: Spool, n: int, size: int) -> None:
    data = _message(size)
    now = time.time()
    for start in range(0, n, 1000):
        msgs = []
        for _ in range(min(1000, n - start)):
            msgid = str(uuid.uuid4())
            msgs.append(NewMessage(
                msgid=msgid, envelope=Envelope(sender="sender@bench.test", recipients=("rcpt@sink.test",)),
                path=_spool_fast(spool, msgid, data), size=len(data), subject="p2", received=now,
                transport="default"))
        with store.transaction() as s:
            for m in msgs:
                q.enqueue(s, m, now=now)


def run_ours(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    url = args.database or f"sqlite:///{run_dir / 'store.db'}"
    store = Store(url)
    upgrade(store.engine)
    spool = Spool(run_dir / "spool")
    fill_queue(store, spool, args.messages, args.size)
    sink = SinkProcess(workdir)
    config = Config(
        node=NodeSection(hostname="bench.test"),
        transports=[Transport(id="default", nexthop=f"127.0.0.1:{sink.port}", starttls="none",
                              max_connections=args.connections, max_messages_per_connection=args.per_connection)],
        queue=QueueSection(workers=args.workers, poll_interval=0.05),
    )

    async def deliver() -> tuple[float, int]:
        service = DeliveryService(store=store, spool=spool, config=lambda: config, flow=DefaultFlow(),
                                  batch_size=args.batch)
        started = time.monotonic()
        await service.start()
        deadline = started + args.timeout
        while True:  # done = every message at the sink and every outcome committed
            if sink.counts()[0] >= args.messages:
                with store.transaction(read_only=True) as s:
                    if not sum(q.counts_by_state(s).values()):
                        break
            if time.monotonic() > deadline:
                raise TimeoutError(f"ours: {sink.counts()[0]} of {args.messages} delivered in time")
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - started
        load = os.getloadavg()[0]
        await service.stop()
        return elapsed, service.pool.opened, load

    try:
        load_before = os.getloadavg()[0]
        elapsed, opened, load = asyncio.run(deliver())
        messages, connections = sink.counts()
    finally:
        sink.stop()
        store.dispose()
    return {"seconds": elapsed, "msgs_per_s": args.messages / elapsed, "connections": connections,
            "delivered": messages, "load_before": load_before, "load_after": load}


def run_postfix(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    sink = SinkProcess(workdir)
    pf = PostfixRelay(smtp_port=free_port(), relay_port=sink.port, concurrency=args.connections)
    try:
        pf.start()
        pf.inject(args.messages, size=args.size)
        deadline = time.monotonic() + args.timeout
        while pf.held() < args.messages:
            if time.monotonic() > deadline:
                raise TimeoutError(f"postfix holds {pf.held()} of {args.messages}")
            time.sleep(0.05)
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        pf.release()
        sink.wait_for(args.messages, started + args.timeout)
        while pf.queued():  # and removed from its queue
            if time.monotonic() > started + args.timeout:
                raise TimeoutError("postfix did not empty its queue")
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        load = os.getloadavg()[0]
        messages, connections = sink.counts()
    finally:
        pf.stop()
        sink.stop()
        pf.cleanup()
    return {"seconds": elapsed, "msgs_per_s": args.messages / elapsed, "connections": connections,
            "delivered": messages, "load_before": load_before, "load_after": load}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--size", type=int, default=1024, help="message size in bytes")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=100, help="entries claimed per worker round")
    ap.add_argument("--connections", type=int, default=20, help="per-destination limit (both)")
    ap.add_argument("--per-connection", type=int, default=1000, help="messages per connection (ours)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per phase")
    ap.add_argument("--database", default="", help="store URL (default: a fresh SQLite file)")
    ap.add_argument("--no-postfix", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with_postfix = not args.no_postfix and available()
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="p2-") as tmp:
        for i in range(args.runs):  # interleaved so that machine noise hits both alike
            ours.append(run_ours(args, Path(tmp)))
            print(f"run {i + 1}: appliance {ours[-1]['msgs_per_s']:.0f} msg/s "
                  f"(load {ours[-1]['load_after']:.2f})", end="", flush=True)
            if with_postfix:
                theirs.append(run_postfix(args, Path(tmp)))
                print(f", postfix {theirs[-1]['msgs_per_s']:.0f} msg/s (load {theirs[-1]['load_after']:.2f})", end="")
            print()
    report(args, ours, theirs)


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(args: argparse.Namespace, ours: list[dict[str, float]], theirs: list[dict[str, float]]) -> None:
    rows = [("appliance", ours)] + ([("postfix", theirs)] if theirs else [])
    print(f"\nP2 delivery: {args.messages} messages of {args.size} B to a loopback sink, "
          f"median of {args.runs}")
    print(f"{'system':<10} {'msg/s':>8} {'seconds':>8} {'connections':>12} {'load 1m before/after':>21}")
    for name, runs in rows:
        print(f"{name:<10} {_median(runs, 'msgs_per_s'):>8.0f} {_median(runs, 'seconds'):>8.2f} "
              f"{_median(runs, 'connections'):>12.0f} "
              f"{_median(runs, 'load_before'):>10.2f}/{_median(runs, 'load_after'):<10.2f}")
    ratio = _median(ours, "msgs_per_s") / _median(theirs, "msgs_per_s") if theirs else None
    if ratio is not None:
        print(f"ratio appliance/postfix: {ratio:.2f}")
    out = {
        "benchmark": "P2", "messages": args.messages, "size": args.size, "runs": args.runs,
        "workers": args.workers, "connections": args.connections, "per_connection": args.per_connection,
        "database": "postgresql" if args.database.startswith("postgresql") else "sqlite",
        "machine": platform.platform(), "time": time.time(),
        "cpus": os.cpu_count(),
        "appliance": {"runs": ours, "median_msgs_per_s": _median(ours, "msgs_per_s"),
                      "median_connections": _median(ours, "connections"),
                      "median_load_after": _median(ours, "load_after")},
        "postfix": {"runs": theirs, "median_msgs_per_s": _median(theirs, "msgs_per_s"),
                    "median_connections": _median(theirs, "connections"),
                    "median_load_after": _median(theirs, "load_after")} if theirs else None,
        "ratio_vs_postfix": ratio,
    }
    path = REPO / "tools" / "bench" / "results" / "p2_delivery.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
