"""P8: proportional set size (PSS) of an idle node, all its processes together.

    python tools/bench/p8_memory.py [--idle 10] [--database URL]

Starts `appliance run` (supervisor and children) on port 0, waits until it is ready and then
`--idle` seconds more, and sums Pss from /proc/PID/smaps_rollup over the supervisor's process
tree. Prints one line per process and the total; writes results/p8_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from p1_ingest import start_node  # noqa: E402
from proctree import pss_kib  # noqa: E402

TARGET_MB = 200


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=10.0, help="seconds idle before measuring")
    parser.add_argument("--database")
    parser.add_argument("--config", help="config text file for the node (e.g. [smtp] processes)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="p8-", dir="/var/tmp"))
    config = Path(args.config).read_text() if args.config else None
    node, _port = start_node(base, 9, args.database, config)  # relay: nothing is sent
    try:
        time.sleep(args.idle)  # idle on purpose: the figure is the resting size
        rows = pss_kib(node.pid)
        total = sum(kib for _name, kib in rows.values())
        for pid, (name, kib) in sorted(rows.items()):
            print(f"{pid:>8}  {kib / 1024:>7.1f} MB  {name}")
        verdict = "met" if total / 1024 < TARGET_MB else "not met"
        print(f"total PSS {total / 1024:.1f} MB over {len(rows)} processes "
              f"(target < {TARGET_MB} MB: {verdict}); load average {os.getloadavg()[0]:.2f}")
        out = HERE / "results" / "p8_memory.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({
            "benchmark": "P8 idle", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "total_mb": total / 1024, "processes": {str(p): {"name": n, "pss_kib": k}
                                                    for p, (n, k) in rows.items()},
            "load_average": os.getloadavg(),
        }, indent=2))
        return 0
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()


if __name__ == "__main__":
    sys.exit(main())
