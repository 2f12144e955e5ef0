"""Housekeeping keeps message timelines (and ended suspensions) for `queue.timeline_days`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import delete, select

from appliance.config.schema import Config
from appliance.db.engine import Store
from appliance.db.models_timeline import MessageEvent, Suspension
from appliance.queue.suspend import ACTIVE
from appliance.stats.periodic import Periodic

log = logging.getLogger(__name__)

CHUNK = 5000


def purge(store: Store, *, before: float) -> int:
    """Remove events older than `before` in chunks (each its own short transaction), and the
    suspensions that ended before it; returns how many events went."""
    removed = 0
    while True:
        with store.transaction() as session:
            ids = list(session.scalars(select(MessageEvent.id).where(MessageEvent.ts < before)
                                       .order_by(MessageEvent.id).limit(CHUNK)))
            if ids:
                session.execute(delete(MessageEvent).where(MessageEvent.id.in_(ids))
                                .execution_options(synchronize_session=False))
        removed += len(ids)
        if len(ids) < CHUNK:
            break
    with store.transaction() as session:
        session.execute(delete(Suspension).where(Suspension.state != ACTIVE, Suspension.ended > 0,
                                                 Suspension.ended < before)
                        .execution_options(synchronize_session=False))
    return removed


class TimelinePurge(Periodic):
    thread_name = "timeline-purge"
    tick_at_start = True

    def __init__(self, store: Store, *, config: Callable[[], Config], interval: float = 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._store = store
        self._config = config
        self._clock = clock
        self.interval = interval

    def tick(self) -> int:
        days = self._config().queue.timeline_days
        try:
            removed = purge(self._store, before=self._clock() - days * 86400)
        except Exception:
            log.exception("timeline purge failed")
            return 0
        if removed:
            log.info("timeline: removed %d events older than %d days", removed, days)
        return removed
