"""The stats flusher: a thread that writes the counter batch and queued rate() hits at a fixed interval (and on stop)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from appliance.db.engine import Store
from appliance.stats.counters import Counters
from appliance.stats.periodic import Periodic
from appliance.stats.rates import Pending, Rates, prune_rates

log = logging.getLogger(__name__)


class StatsFlusher(Periodic):
    """Component with start()/stop() (thread-backed). Failed flushes keep their counts for later."""

    thread_name = "stats-flusher"

    def __init__(
        self, store: Store, counters: Counters, *, interval: float = 1.0, rates: Rates | None = None,
        clock: Callable[[], float] = time.time, prune_every: float = 60.0,
    ) -> None:
        super().__init__()
        self._store = store
        self._counters = counters
        self.interval = interval
        self._rates = rates
        self._clock = clock
        self._prune_every = prune_every
        self._last_prune = 0.0

    def tick(self) -> bool:
        return self.flush_once()

    def stop(self) -> bool:
        if not super().stop():
            return False
        self.flush_once()  # what was counted since the last tick
        return True

    def flush_once(self) -> bool:
        """One flush in its own transaction; on failure the batch is kept for the next one."""
        now = self._clock()
        batch = None
        hits: Pending | None = None
        prune = self._rates is not None and now - self._last_prune >= self._prune_every
        try:
            with self._store.transaction() as session:
                batch = self._counters.flush(session, now=now)
                if self._rates is not None:
                    hits = self._rates.persist(session)
                    if prune:
                        prune_rates(session, now=now)
        except Exception:
            if batch is not None:  # flushed but not committed: count it again next time
                self._counters.restore(batch)
            if hits is not None and self._rates is not None:
                self._rates.requeue(hits)
            log.exception("stats flush failed; keeping %d counters and %d rate hits for the next one",
                          len(batch or {}), len(hits or ()))
            return False
        if prune and self._rates is not None:
            self._rates.prune(now)  # memory stays bounded: windows with no live hit go
            self._last_prune = now
        return True
