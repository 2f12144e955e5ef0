"""The graph updater: a thread that measures every graph and updates its RRD at an interval."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import rrdtool

from appliance.errors import NotFound
from appliance.stats import rrd
from appliance.stats.periodic import Periodic
from appliance.stats.sources import Measurement, Probe, measure

log = logging.getLogger(__name__)


class GraphUpdater(Periodic):
    """Component with start()/stop() (thread-backed); one update per interval, files created on first sight."""

    thread_name = "graph-updater"
    tick_at_start = True

    def __init__(
        self, rrd_dir: Path, probe: Probe, *, interval: float = 60.0, step: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        rrd.archives(step)  # refuses a step the archives cannot use, before anything starts
        super().__init__()
        self.rrd_dir = rrd_dir
        self.probe = probe  # replaced when the config's graphed counters change
        self.interval = interval
        self._step = step
        self._heartbeat = max(2 * step, int(3 * interval) + 1)
        self._clock = clock
        self._last: dict[str, int] = {}

    def tick(self) -> int:
        return self.update_once()

    def update_once(self) -> int:
        """Measure and write every graph; return how many files were updated."""
        now = int(self._clock())
        try:
            measurements = measure(self.probe, now=now)
        except Exception:
            log.exception("graph measurement failed")
            return 0
        written = 0
        for m in measurements:
            try:
                written += self._write(m, now)
            except (rrdtool.OperationalError, OSError, NotFound) as exc:
                log.warning("graph %s not updated: %s", m.graph, exc)
        return written

    def _write(self, m: Measurement, now: int) -> int:
        path = rrd.path_of(self.rrd_dir, m.graph)
        if not path.exists():
            rrd.create(path, m, step=self._step, heartbeat=self._heartbeat, now=now)
        last = self._last.get(m.graph)
        if last is None:
            last = rrd.last_update(path)
        if now <= last:  # rrdtool refuses a second update in the same second
            return 0
        rrd.update(path, m, ts=now)
        self._last[m.graph] = now
        return 1
