"""P1 breakdown: where the time of one SMTP message goes, phase by phase, in a real node.

    python tools/bench/p1_phases.py [--count 300] [--sessions 1] [--size 1024] [--label after]

Runs a whole node (every part, in one process: `appliance.compose.build_single`) in this process,
with timing wrapped around its phase functions from outside (phasetimer.instrument), relaying to an smtp-sink, and drives it with smtp-source
(one message per SMTP session, like p1_ingest). Prints the median, p90 and mean of every phase
and writes results/p1_phases-<label>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from p1_ingest import free_port, inject, wait_for_port  # noqa: E402

from appliance.settings import Settings, default_database_url  # noqa: E402
from phasetimer import PhaseTimer, instrument  # noqa: E402
from appliance import compose  # noqa: E402


async def run(args: argparse.Namespace, base: Path, sink_port: int) -> dict[str, object]:
    data_dir = base / "node"
    port = free_port()
    settings = Settings(data_dir=data_dir, database_url=default_database_url(data_dir),
                        smtp_listen=("127.0.0.1", port),
                        soap_listen=f"http://127.0.0.1:{free_port()}",
                        relay=("127.0.0.1", sink_port))
    data_dir.mkdir(parents=True)
    store, serial, _password = compose.prepare_store(settings)
    node = compose.build_single(compose.build_core(settings, role="node", store=store,
                                                   serial=serial))
    smtp = node.smtp
    timer = PhaseTimer()
    instrument(timer)
    await compose.start(node)
    try:
        await asyncio.to_thread(wait_for_port, port)
        # warm-up (imports, first connections, SQLite page cache), not measured
        await asyncio.to_thread(inject, port, count=20, size=args.size, sessions=args.sessions)
        timer.clear()
        rate = await asyncio.to_thread(inject, port, count=args.count, size=args.size,
                                       sessions=args.sessions)
        intake = smtp.intake
        return {"rate": rate, "phases": timer.summary(),
                "batches": intake.batches, "submitted": intake.submitted}
    finally:
        await compose.stop(node)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--label", default="now")
    parser.add_argument("--switch-interval", type=float, help="sys.setswitchinterval (seconds)")
    args = parser.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    logging.basicConfig(level=logging.WARNING)
    base = Path(tempfile.mkdtemp(prefix="p1-phases-", dir="/var/tmp"))
    sink_port = free_port()
    sink = subprocess.Popen(["smtp-sink", *(["-u", "postfix"] if os.geteuid() == 0 else []),
                             f"127.0.0.1:{sink_port}", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(sink_port, sink)
        load = os.getloadavg()
        result = asyncio.run(run(args, base, sink_port))
    finally:
        sink.terminate()
        sink.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)
    print(f"P1 phases: {args.count} x {args.size} B, {args.sessions} session(s), "
          f"{result['rate']:.0f} msg/s, load {load[0]:.2f}; "
          f"{result['submitted']} messages in {result['batches']} commits")
    print(f"{'phase':<36} {'median ms':>10} {'p90 ms':>8} {'mean ms':>8}")
    phases: dict[str, dict[str, float]] = result["phases"]  # type: ignore[assignment]
    for name, row in phases.items():
        print(f"{name:<36} {row['median_ms']:>10.2f} {row['p90_ms']:>8.2f} {row['mean_ms']:>8.2f}")
    out = HERE / "results" / f"p1_phases-{args.label}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "P1 phases", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "count": args.count, "size": args.size, "sessions": args.sessions,
        "load_average": load, **result,
    }, indent=2))
    print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
