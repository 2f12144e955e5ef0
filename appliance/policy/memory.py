"""In-memory stat() and rate(): for scriptTest (which must not touch the node's counters) and tests."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable


class MemoryCounters:
    """stat() into a dict: key (k1, k2, k3) -> count."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = collections.Counter()
        self._lock = threading.Lock()

    def stat(self, key1: str, key2: str = "", key3: str = "", n: int = 1) -> None:
        with self._lock:
            self.counts[(key1, key2, key3)] += n


class MemoryRates:
    """rate() over a sliding window of hit times; refused calls are not counted (as appliance.stats)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._hits: dict[tuple[str, str, int], collections.deque[float]] = {}
        self._lock = threading.Lock()

    def rate(self, ns: str, entry: str, count: int, interval: int) -> bool:
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault((ns, entry, interval), collections.deque())
            while hits and hits[0] <= now - interval:
                hits.popleft()
            if len(hits) >= count:
                return False
            hits.append(now)
            return True
