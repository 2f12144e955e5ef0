"""Optional per-phase timing of SMTP sessions and DATA -> 250 (for the P1 benchmark)."""

from __future__ import annotations

import statistics
import threading
from collections import defaultdict


class PhaseTimer:
    """Durations (seconds) per named phase; bounded, safe to feed from several threads.

    A listener records into it only when one is set on SmtpServer (`phases`); otherwise the hot
    path pays one `is None` test per phase.
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
