"""P8: proportional set size (PSS) of an idle node, all its processes together.

    python tools/bench/p8_memory.py [--idle 10] [--database URL] [--spawn fork|exec|both] [--rounds 3]

Starts `appliance run` (supervisor and children) on port 0, waits until it is ready and then
`--idle` seconds more, and sums Pss from /proc/PID/smaps_rollup over the supervisor's process
tree. `--spawn both` (the default) measures children forked from the fork server against
children that each start a new interpreter (`appliance run --spawn exec`), alternating, in one
run; every figure is the median of `--rounds` nodes. Prints one line per process of the last
node of each kind and the medians; writes results/p8_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
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


def measure(spawn: str, args: argparse.Namespace, config: str | None) -> dict[int, tuple[str, int]]:
    base = Path(tempfile.mkdtemp(prefix=f"p8-{spawn}-", dir="/var/tmp"))
    node, _port = start_node(base, 9, args.database, config,  # relay: nothing is sent
                             extra=("--spawn", spawn))
    try:
        time.sleep(args.idle)  # idle on purpose: the figure is the resting size
        return pss_kib(node.pid)
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=10.0, help="seconds idle before measuring")
    parser.add_argument("--database")
    parser.add_argument("--config", help="config text file for the node (e.g. [smtp] processes)")
    parser.add_argument("--spawn", choices=("fork", "exec", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = Path(args.config).read_text() if args.config else None
    kinds = ("exec", "fork") if args.spawn == "both" else (args.spawn,)
    totals: dict[str, list[float]] = {kind: [] for kind in kinds}
    last: dict[str, dict[int, tuple[str, int]]] = {}
    for _round in range(args.rounds):
        for kind in kinds:
            rows = measure(kind, args, config)
            totals[kind].append(sum(kib for _name, kib in rows.values()) / 1024)
            last[kind] = rows
    result: dict[str, object] = {"benchmark": "P8 idle", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                 "rounds": args.rounds, "idle_s": args.idle,
                                 "load_average": os.getloadavg()}
    for kind in kinds:
        print(f"--- spawn {kind}: the last node's processes")
        for pid, (name, kib) in sorted(last[kind].items()):
            print(f"{pid:>8}  {kib / 1024:>7.1f} MB  {name}")
        median = statistics.median(totals[kind])
        verdict = "met" if median < TARGET_MB else "not met"
        print(f"spawn {kind}: total PSS median {median:.1f} MB over {len(last[kind])} processes "
              f"(rounds {', '.join(f'{t:.1f}' for t in totals[kind])}; target < {TARGET_MB} MB: "
              f"{verdict})")
        result[kind] = {"total_mb_median": median, "total_mb": totals[kind],
                        "processes": {str(p): {"name": n, "pss_kib": k}
                                      for p, (n, k) in last[kind].items()}}
    if len(kinds) == 2:
        ratio = statistics.median(totals["fork"]) / statistics.median(totals["exec"])
        result["fork_over_exec"] = ratio
        print(f"fork / exec: {ratio:.2f}; load average {os.getloadavg()[0]:.2f}")
    out = HERE / "results" / "p8_memory.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
