"""Housekeeping's queue work: purging expired trash, and running throttled drain jobs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from appliance.config.schema import Config
from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.db.models_trash import QueueJob
from appliance.queue import jobs, trash
from appliance.queue.bulk import BulkBouncer
from appliance.queue.spool import Spool
from appliance.stats.periodic import Periodic

log = logging.getLogger(__name__)

DRAIN_BOUNCE_REASON = "bounced by a drain job"


def purge_interval(hours: float) -> float:
    """How often the trash is looked at: a tenth of the grace period, 1 to 60 seconds."""
    return min(60.0, max(1.0, hours * 360.0))


class TrashPurger(Periodic):
    """Removes trashed entries older than `queue.trash_hours` (followed without a restart)."""

    thread_name = "trash-purge"
    tick_at_start = True

    def __init__(self, store: Store, spool: Spool, *, hours: float,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._store = store
        self._spool = spool
        self._clock = clock
        self.hours = hours
        self.interval = purge_interval(hours)
        self.purged = 0

    def apply(self, old: Config, new: Config) -> None:
        hours = new.queue.trash_hours
        if hours != self.hours:
            self.hours = hours
            self.interval = purge_interval(hours)
            self.wake()  # a shorter grace period takes effect now, not after the old wait

    def tick(self) -> int:
        try:
            now = self._clock()
            done = trash.purge(self._store, trash.expired_condition(now=now, hours=self.hours),
                               now=now, on_paths=self._spool.remove_many)
        except Exception:
            log.exception("trash purge failed")
            return 0
        if done:
            log.info("trash: purged %d entries deleted more than %g hours ago", done, self.hours)
        self.purged += done
        return done


class DrainRunner(Periodic):
    """Steps every running drain job once a second; jobs live in the store, so a restarted
    process carries on where the last one committed."""

    thread_name = "queue-drains"
    tick_at_start = True
    interval = 1.0

    def __init__(self, store: Store, spool: Spool, *, bounce_many: BulkBouncer,
                 kick: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._store = store
        self._spool = spool
        self._bounce_many = bounce_many
        self._kick = kick
        self._clock = clock

    def tick(self) -> int:
        acted = 0
        try:
            ids = jobs.running(self._store)
        except Exception:
            log.exception("queue jobs: cannot read the running jobs")
            return 0
        for job_id in ids:
            try:
                result = jobs.step(self._store, job_id, now=self._clock(),
                                   bounce_many=self._bounce_many, trash_by=_drain_deleter)
            except Exception:
                log.exception("queue job %d: step failed (retried next second)", job_id)
                continue
            if result.orphans:
                self._spool.remove_many(result.orphans)
            acted += result.acted
        if acted:
            self._kick()
        return acted


def _drain_deleter(job: QueueJob) -> str:
    return f"{job.createdby} (drain {job.id})"


def drain_runner(store: Store, spool: Spool, *, kick: Callable[[], None]) -> DrainRunner:
    """Housekeeping's drain jobs: released entries wake delivery (`kick` is called from the
    runner's thread); bounced ones leave their DSNs to the bounce notifier."""
    from appliance.bounce.handling import bounce_all

    def bounce_many(session: Session, entries: Sequence[QueueEntry]) -> list[str]:
        return bounce_all(session, entries, reason=DRAIN_BOUNCE_REASON, now=time.time())

    return DrainRunner(store, spool, bounce_many=bounce_many, kick=kick)
