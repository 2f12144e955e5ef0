"""P7 from policy scripts: stat() and rate() called by a Lua rcpt_to handler on every message.

    python tools/bench/p7_policy.py [--messages 20000] [--calls 10] [--runs 5]

Runs a ScriptedFlow in-process (the same path an SMTP RCPT takes) with the node's real engines:
appliance.stats Counters (batched in memory) and Rates over a SQLite store in a temp dir.
Measures per message (medians over runs): a handler that only returns accept() (the reference:
the cost of running a script at all), the same handler making `--calls` stat() calls, and rate()
refused (an entry over its limit) and counted (below its limit: the hit is kept in memory and
queued for the stats flusher, which is not running here). The µs per call is (handler time - reference) / calls. A direct
Python Counters.stat() call is measured alongside. Writes tools/bench/results/p7_policy.json.
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from appliance.db.engine import Store  # noqa: E402
from appliance.db.schema import upgrade  # noqa: E402
from appliance.policy.flow import SessionInfo  # noqa: E402
from appliance.policy.functions import Functions  # noqa: E402
from appliance.policy.scripted import ScriptedFlow  # noqa: E402
from appliance.stats.counters import Counters  # noqa: E402
from appliance.stats.rates import Rates  # noqa: E402

RESULTS = ROOT / "tools" / "bench" / "results" / "p7_policy.json"

SCRIPTS = {
    "reference (accept only)": "function rcpt_to(s, r) return accept() end",
    "stat() x{calls}": "function rcpt_to(s, r) for i = 1, {calls} do stat('bench', 'rcpt', s.sasl) end return accept() end",
    "rate() deny path x{calls}": "function rcpt_to(s, r) for i = 1, {calls} do rate('bench-full', s.sasl, 1, 3600) end return accept() end",
    "rate() counted x{calls}": "function rcpt_to(s, r) for i = 1, {calls} do rate('bench-open', r, 1000000000, 3600) end return accept() end",
}


def per_message(flow: ScriptedFlow, messages: int) -> float:
    """Seconds per rcpt_to run, recipients varied so the counted path touches 1000 keys."""
    session = SessionInfo(listener="in", client_ip="127.0.0.1", sasl="bench", authenticated=True)
    started = time.perf_counter()
    for i in range(messages):
        flow.rcpt_to(session, f"r{i % 1000}@example.com")
    return (time.perf_counter() - started) / messages


def direct_stat(counters: Counters, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        counters.stat("bench", "direct", "x")
    return (time.perf_counter() - started) / n


def measure(runs: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(runs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(store.engine)
        counters, rates = Counters(), Rates(store)
        rates.rate("bench-full", "bench", 1, 3600)  # fill the window: later calls are refused
        functions = Functions(counters=counters, rates=rates)
        rows = []
        reference = 0.0
        for label, text in SCRIPTS.items():
            flow = ScriptedFlow(text.replace("{calls}", str(args.calls)), name="bench", functions=functions)
            messages = args.messages
            seconds = measure(args.runs, lambda: per_message(flow, messages))
            calls = args.calls if "x{calls}" in text or "{calls}" in SCRIPTS[label] else 1
            if label.startswith("reference"):
                reference = seconds
            extra = max(seconds - reference, 0.0)
            rows.append({"case": label.replace("{calls}", str(args.calls)), "messages_per_s": 1 / seconds,
                         "us_per_message": seconds * 1e6,
                         "us_per_call": None if label.startswith("reference") else extra / calls * 1e6,
                         "calls_per_s": None if label.startswith("reference") else calls / seconds,
                         "ratio_vs_reference": seconds / reference})
        direct = measure(args.runs, lambda: direct_stat(counters, 200_000))
        rows.append({"case": "Counters.stat() from Python", "messages_per_s": None, "us_per_message": None,
                     "us_per_call": direct * 1e6, "calls_per_s": 1 / direct, "ratio_vs_reference": None})
        store.dispose()
    print(f"{'case':32} {'msg/s':>10} {'µs/msg':>9} {'µs/call':>9} {'calls/s':>11} {'x ref':>7}")
    for r in rows:
        def f(v: float | None, spec: str) -> str:
            return "-" if v is None else format(v, spec)
        print(f"{r['case']:32} {f(r['messages_per_s'], '10.0f')} {f(r['us_per_message'], '9.1f')} "
              f"{f(r['us_per_call'], '9.2f')} {f(r['calls_per_s'], '11.0f')} {f(r['ratio_vs_reference'], '7.2f')}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "P7 policy stat()/rate()", "runs": args.runs,
                                   "messages": args.messages, "calls_per_message": args.calls,
                                   "medians": rows}, indent=2))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
