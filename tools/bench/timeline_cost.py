"""What the queue workflows add to the hot paths: timeline events in the intake's group commit,
and active suspensions in delivery's claim.

    python tools/bench/timeline_cost.py [--queue 20000] [--batch 256] [--runs 15]

1. Intake: one transaction queueing a batch of `batch` messages (one recipient each, with the
   reception notes SMTP makes), with their timeline events vs enqueue alone (the reference,
   same run). Each transaction is rolled back, so every run sees the same store.
2. Delivery claim (100 entries) over a queue of `queue` entries with no suspension (reference)
   vs three active suspensions holding 30% of the queue (their filters compiled once, as the
   delivery process does).
Medians over `runs`; ratios against the reference. Writes tools/bench/results/timeline_cost.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sqlalchemy.orm import Session  # noqa: E402

from appliance.db.engine import Store  # noqa: E402
from appliance.db.schema import ensure_schema  # noqa: E402
from appliance.queue import store as q  # noqa: E402
from appliance.queue import events, suspend  # noqa: E402
from appliance.queue.intake import _Item, _store_one  # noqa: E402
from appliance.types import Envelope, NewMessage, Note  # noqa: E402


class _Rollback(Exception):
    pass


def _timed(store: Store, work: Callable[[Session], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        try:
            with store.transaction() as session:
                work(session)
                session.flush()
                times.append(time.perf_counter() - started)
                raise _Rollback
        except _Rollback:
            pass
    return statistics.median(times)


def _message(i: int, now: float) -> NewMessage:
    msgid = str(uuid.uuid4())
    notes = (Note(kind="received", ts=now, detail={
        "client": "127.0.0.1", "helo": "client.example", "sasl": "", "tls": "no",
        "listener": "inbound", "sender": "s@src.test", "recipients": "1", "size": "1024"}),)
    return NewMessage(msgid=msgid, path=f"{msgid[:2]}/{msgid}.eml", size=1024, received=now,
                      envelope=Envelope(sender="s@src.test", recipients=(f"r{i}@d{i % 10}.test",),
                                        listener="inbound", client_ip="127.0.0.1", helo="client.example"),
                      transport="default", notes=notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        ensure_schema(store.engine)
        now = time.time()
        with store.transaction() as s:
            q.enqueue_many(s, [dataclasses.replace(_message(i, now), notes=()) for i in range(args.queue)],
                           now=now)
        batch = [_message(i, now) for i in range(args.batch)]
        plain = _timed(store, lambda s: [q.enqueue(s, m, now=now) for m in batch], args.runs)
        def with_timeline(s: Session) -> None:
            timeline: list[events.Event] = []
            for m in batch:
                _store_one(s, _Item(m, None, (), None), now, timeline)  # type: ignore[arg-type]
            events.add(s, timeline)

        with_events = _timed(store, with_timeline, args.runs)

        def claim(holds: suspend.Holds | None) -> Callable[[Session], object]:
            def work(s: Session) -> object:
                exclude = None
                if holds is not None:
                    holds.refresh(s, now=now)
                    exclude = holds.exclusion()
                return q.claim(s, owner="bench", now=now, lease=60, limit=100, exclude=exclude)
            return work

        bare = _timed(store, claim(None), args.runs)
        with store.transaction() as s:
            for d in range(3):
                suspend.create(s, filter=f"to~%@d{d}.test", ttl=3600, reason="bench", author="bench", now=now)
        holds = suspend.Holds()
        held = _timed(store, claim(holds), args.runs)
        store.dispose()
    result = {
        "intake_batch": args.batch, "intake_enqueue_s": plain, "intake_with_events_s": with_events,
        "intake_ratio": with_events / plain, "queue": args.queue, "claim_s": bare,
        "claim_3_suspensions_s": held, "claim_ratio": held / bare,
        "filter_compilations": holds.compilations, "runs": args.runs,
    }
    print(f"intake, {args.batch} messages per transaction: enqueue {plain * 1000:.1f} ms, "
          f"with timeline events {with_events * 1000:.1f} ms (x{result['intake_ratio']:.2f})")
    print(f"claim 100 of {args.queue}: {bare * 1000:.2f} ms, with 3 suspensions {held * 1000:.2f} ms "
          f"(x{result['claim_ratio']:.2f}; filters compiled {holds.compilations}x for {args.runs} claims)")
    out = REPO / "tools" / "bench" / "results" / "timeline_cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
