"""Connection caps per client address and in total, and one log line per condition."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

# Conditions remembered for rate-limited logging; beyond this the table starts afresh.
_MAX_CONDITIONS = 1_000


class ConditionLog:
    """Logs a condition (e.g. "per-address limit reached for 192.0.2.7") once, then at most
    once per `interval` with the count of repeats, instead of a line per occurrence."""

    def __init__(self, logger: logging.Logger, *, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}

    def note(self, condition: str, detail: str = "") -> None:
        """Log `condition` (with this occurrence's `detail`, e.g. the address) unless it was
        logged less than `interval` ago; repeats are counted into the next line."""
        now = self._clock()
        with self._lock:
            last, repeats = self._seen.get(condition, (float("-inf"), 0))
            if now - last < self._interval:
                self._seen[condition] = (last, repeats + 1)
                return
            if len(self._seen) >= _MAX_CONDITIONS:
                self._seen.clear()
            self._seen[condition] = (now, 0)
        more = f" ({repeats} more in the last {self._interval:.0f} s)" if repeats else ""
        self._log.warning("%s%s%s; repeats are logged at most every %.0f s", condition,
                          f" (latest: {detail})" if detail else "", more, self._interval)


class ConnectionCounter:
    """Open connections per client address and in total (thread-safe).

    `admit()` counts a connection and returns "" or, when a limit is reached, the condition
    refused (and counts nothing); each admitted connection is `release()`d once.
    """

    def __init__(self, *, total: int, per_address: int, name: str,
                 log: ConditionLog) -> None:
        self.total = total
        self.per_address = per_address
        self._name = name
        self._log = log
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def full(self, address: str) -> str:
        """The limit a new connection from `address` would hit ("" for none); counts nothing."""
        if self._count >= self.total:
            return f"{self._name}: {self.total} connections open, refusing more"
        if self._open.get(address, 0) >= self.per_address:
            return (f"{self._name}: {self.per_address} connections open from one address, "
                    f"refusing more from it")
        return ""

    def admit(self, address: str) -> str:
        with self._lock:
            condition = self.full(address)
            if not condition:
                self._open[address] = self._open.get(address, 0) + 1
                self._count += 1
                return ""
        self._log.note(condition, address)
        return condition

    def release(self, address: str) -> None:
        with self._lock:
            left = self._open.get(address, 0) - 1
            if left > 0:
                self._open[address] = left
            else:
                self._open.pop(address, None)
            self._count = max(self._count - 1, 0)


def share(limit: int, processes: int) -> int:
    """One process's part of a limit that `processes` processes enforce together."""
    return max(1, -(-limit // max(processes, 1)))
