"""searchlog over a few GB of node log: wall time and throughput, side by side with `grep -F`.

    python tools/bench/searchlog.py [--size-mb 2048] [--files 8] [--runs 3] [--keep DIR]

Writes SIZE MB of node-log lines (one message id per 10,000 lines is the needle) into FILES
rotated files, then times, medians of RUNS: searchlog for the rare id through the real runner
(output polled as the SOAP service does), searchlog -a TIME starting in the middle (bisected),
and `grep -F` over the same files as the reference. Prints a table and writes
tools/bench/results/searchlog.json. Memory: the process's peak RSS is reported too.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from appliance.commands.base import CommandContext  # noqa: E402
from appliance.commands.catalog import default_catalog  # noqa: E402
from appliance.commands.runner import Limits, Runner  # noqa: E402
from appliance.errors import NotFound  # noqa: E402
from appliance.nodelog import LOG_NAME, format_time  # noqa: E402

NEEDLE = "5e1f0c2a-7b3d-4c8e-9f10-aabbccddeeff"
T0 = 1_700_000_000.0


def write_logs(log_dir: Path, size_mb: int, files: int) -> tuple[int, float]:
    """Lines one millisecond apart; returns (lines written, the time of the middle line)."""
    per_file = size_mb * 1024 * 1024 // files
    n = 0
    names = [f"{LOG_NAME}.{i}" for i in range(files - 1, 0, -1)] + [LOG_NAME]
    for name in names:
        with open(log_dir / name, "w") as fh:
            written, batch = 0, []
            while written < per_file:
                # Timestamps one millisecond apart: format the second once per 1,000 lines.
                if n % 1000 == 0 or not batch:
                    second = format_time(T0 + n // 1000)[:19]
                msgid = NEEDLE if n % 10_000 == 5_000 else f"{n:08x}-0000-4000-8000-000000000000"
                line = (f"{second}.{(n % 1000) * 1000:06d}+00:00 node1 appliance[4242]: "
                        f"appliance.delivery.service: delivered {msgid}:{n} to "
                        f"<user{n % 977}@example.org> via default 192.0.2.{n % 250}:25 in 0.012s: "
                        f"250 2.0.0 Ok queued\n")
                batch.append(line)
                written += len(line)
                n += 1
                if len(batch) == 10_000:
                    fh.write("".join(batch))
                    batch.clear()
            fh.write("".join(batch))
    return n, T0 + n / 2000


def run_searchlog(runner: Runner, argv: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    cid = runner.run("bench", argv)
    lines = 0
    while True:
        try:
            lines += sum(chunk.count(b"\n") for chunk in runner.poll("bench", cid, wait=0.05))
        except NotFound:
            return time.perf_counter() - started, lines


def run_grep(paths: list[Path]) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run(["grep", "-F", "-h", NEEDLE, *map(str, paths)], capture_output=True, check=False)
    return time.perf_counter() - started, done.stdout.count(b"\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=2048)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="reuse/keep the generated logs in this directory")
    args = ap.parse_args()
    log_dir = args.keep or Path(tempfile.mkdtemp(prefix="searchlog-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        if not (log_dir / LOG_NAME).exists():
            t = time.perf_counter()
            total, middle = write_logs(log_dir, args.size_mb, args.files)
            print(f"wrote {total:,} lines ({args.size_mb} MB) in {time.perf_counter() - t:.1f} s")
        else:
            middle = None
        size = sum(p.stat().st_size for p in log_dir.iterdir())
        paths = sorted(log_dir.iterdir(), key=lambda p: (p.name == LOG_NAME, -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0))
        runner = Runner(default_catalog(), CommandContext(log_dir=log_dir),
                        limits=Limits(max_output=1 << 30, max_runtime=3600))
        cases: dict[str, list[tuple[float, int]]] = {"searchlog": [], "grep -F": []}
        if middle is not None:
            cases["searchlog -a middle"] = []
        for _ in range(args.runs):
            cases["grep -F"].append(run_grep(paths))
            cases["searchlog"].append(run_searchlog(runner, ["searchlog", "--", NEEDLE]))
            if middle is not None:
                cases["searchlog -a middle"].append(
                    run_searchlog(runner, ["searchlog", "-a", str(middle), "--", NEEDLE]))
        runner.stop()
        reference = statistics.median(t for t, _ in cases["grep -F"])
        rows = []
        print(f"\n{size / 1e9:.2f} GB in {len(paths)} files, medians of {args.runs}")
        print(f"{'case':<22}{'seconds':>10}{'GB/s':>8}{'lines':>8}{'vs grep':>9}")
        for name, results in cases.items():
            median = statistics.median(t for t, _ in results)
            lines = results[0][1]
            row = {"case": name, "seconds": round(median, 3), "gb_per_s": round(size / 1e9 / median, 2),
                   "lines": lines, "ratio_vs_grep": round(median / reference, 2)}
            rows.append(row)
            print(f"{name:<22}{median:>10.3f}{row['gb_per_s']:>8.2f}{lines:>8}{row['ratio_vs_grep']:>9.2f}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of this process: {peak:.0f} MB")
        out = REPO / "tools" / "bench" / "results" / "searchlog.json"
        out.write_text(json.dumps({"bytes": size, "files": len(paths), "runs": args.runs,
                                   "machine": platform.platform(), "peak_rss_mb": round(peak),
                                   "results": rows}, indent=2) + "\n")
        print(f"wrote {out.relative_to(REPO)}")
    finally:
        if args.keep is None:
            shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
