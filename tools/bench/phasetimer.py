"""Per-phase timing of DATA -> 250 for the P1 benchmark, put around the node's code from outside."""

from __future__ import annotations

import statistics
import threading
from collections import defaultdict


class PhaseTimer:
    """Durations (seconds) per named phase; bounded, safe to feed from several threads.

    `instrument()` wraps the node's phase functions in the benchmark's own process; the
    production code has no timing in it.
    """

    def __init__(self, *, limit: int = 200_000) -> None:
        self._limit = limit
        self._samples: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def add(self, phase: str, seconds: float) -> None:
        with self._lock:
            samples = self._samples[phase]
            if len(samples) < self._limit:
                samples.append(seconds)

    def clear(self) -> None:
        with self._lock:
            self._samples.clear()

    def summary(self) -> dict[str, dict[str, float]]:
        """Per phase: count, median, p90 and mean, in milliseconds."""
        with self._lock:
            copied = {name: list(values) for name, values in self._samples.items()}
        out: dict[str, dict[str, float]] = {}
        for name, values in copied.items():
            if not values:
                continue
            ordered = sorted(values)
            out[name] = {
                "count": float(len(values)),
                "median_ms": statistics.median(ordered) * 1000,
                "p90_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] * 1000,
                "mean_ms": statistics.fmean(ordered) * 1000,
            }
        return out


def instrument(timer: PhaseTimer) -> None:
    """Time the phases of every accepted message by wrapping the functions that do them."""
    import functools
    import time

    from appliance.queue.intake import Intake
    from appliance.queue.spool import Spool
    from appliance.smtp.handler import Handler

    def timed(owner: type, name: str, phase: str, is_async: bool = False) -> None:
        original = getattr(owner, name)
        if is_async:
            @functools.wraps(original)
            async def awrapper(*args: object, **kwargs: object) -> object:
                start = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    timer.add(phase, time.perf_counter() - start)
            setattr(owner, name, awrapper)
            return

        @functools.wraps(original)
        def wrapper(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timer.add(phase, time.perf_counter() - start)
        setattr(owner, name, wrapper)

    timed(Handler, "_receive", "data: DATA end -> 250 total", is_async=True)
    timed(Handler, "_build", "data: build message")
    timed(Spool, "write", "data: spool write+fsyncs")
    timed(Intake, "_transaction", "data: wait for write lock + insert + commit")
