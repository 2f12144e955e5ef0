"""Spool repair (as Postfix's `postsuper -s`): orphaned bodies removed, bodiless entries set aside.

A crash can leave a body no entry refers to (written for a message or a DSN whose transaction
never committed, or not yet unlinked after a delete committed), and, if a disk was restored or
a file removed by hand, an entry whose body is gone. The decisions are pure functions over
what was seen; `sweep()` is the thin loop that looks, decides and acts, one spool subdirectory
(or one chunk of entries) at a time, so its memory does not grow with the queue.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from sqlalchemy import select

from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.queue import store as queue_store
from appliance.queue.spool import Spool
from appliance.stats.periodic import Periodic
from appliance.types import Action

log = logging.getLogger(__name__)

# A body is written before the transaction that refers to it commits, so a file younger than
# this is never taken for an orphan: it may be a message being accepted or bounced right now.
# An hour is far above any commit wait (SQLite's busy timeout, a bulk chunk).
DEFAULT_GRACE = 3600.0
DEFAULT_INTERVAL = 3600.0
MISSING_BODY = "spool body missing: set aside by the spool sweep"
_LOOKUP = 500  # spool paths looked up per query (one bound list, the path index)
_ENTRY_CHUNK = 2000  # entries checked for a body per read transaction


@dataclasses.dataclass(kw_only=True)
class SweepReport:
    """What one sweep did."""

    files_seen: int = 0
    orphans_removed: int = 0
    entries_checked: int = 0
    set_aside: int = 0


# -- pure core --------------------------------------------------------------------------------
def orphan_candidates(files: Iterable[tuple[str, float]], *, now: float, grace: float) -> list[str]:
    """Spool files old enough to be judged: modified more than `grace` seconds before `now`."""
    return [path for path, mtime in files if mtime <= now - grace]


def orphans(candidates: Sequence[str], referenced: set[str]) -> list[str]:
    """The candidates no queue entry refers to."""
    return [path for path in candidates if path not in referenced]


def bodiless(entries: Iterable[tuple[int, str]], exists: Callable[[str], bool]) -> list[int]:
    """Ids of entries that name a spool body which does not exist (an empty path names none).
    Each distinct path is looked at once."""
    seen: dict[str, bool] = {}
    missing = []
    for entry_id, path in entries:
        if not path:
            continue
        if path not in seen:
            seen[path] = exists(path)
        if not seen[path]:
            missing.append(entry_id)
    return missing


# -- the loop ---------------------------------------------------------------------------------
def sweep(store: Store, spool: Spool, *, now: float, grace: float = DEFAULT_GRACE) -> SweepReport:
    """Remove orphaned spool files older than `grace`; set aside entries whose body is missing."""
    report = SweepReport()
    for bucket in spool.buckets():
        files = list(spool.scan(bucket))
        report.files_seen += len(files)
        candidates = orphan_candidates(files, now=now, grace=grace)
        for start in range(0, len(candidates), _LOOKUP):
            part = candidates[start:start + _LOOKUP]
            with store.transaction(read_only=True) as session:
                referenced = set(session.scalars(
                    select(QueueEntry.path).where(QueueEntry.path.in_(part)).distinct()))
            # An old unreferenced file never becomes referenced again (a body is referenced
            # only by the commit that follows its write), so it is safe to remove now.
            for path in orphans(part, referenced):
                if spool.unlink(path):
                    report.orphans_removed += 1
    after = 0
    while True:
        with store.transaction(read_only=True) as session:
            rows = [(int(i), str(p)) for i, p in session.execute(
                select(QueueEntry.id, QueueEntry.path).where(QueueEntry.id > after)
                .order_by(QueueEntry.id).limit(_ENTRY_CHUNK))]
        if not rows:
            break
        after = rows[-1][0]
        report.entries_checked += len(rows)
        missing = bodiless(rows, spool.exists)
        if missing:
            report.set_aside += set_aside(store, spool, missing, now=now)
    if report.orphans_removed or report.set_aside:
        log.warning("spool sweep: removed %d orphaned bodies, set aside %d entries without a body",
                    report.orphans_removed, report.set_aside)
    return report


def set_aside(store: Store, spool: Spool, ids: Sequence[int], *, now: float) -> int:
    """Move entries whose body is missing to history as ERROR, re-checked under the write lock.

    Bodies are removed only after the commit that removes their last entry, so an entry that
    still exists inside this transaction with no body really has lost it (not a delete racing us).
    """
    done = 0
    with store.transaction() as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        for entry_id in ids:
            entry = session.get(QueueEntry, entry_id, with_for_update=postgres)
            if entry is None or not entry.path or spool.exists(entry.path):
                continue
            log.error("queue entry %s:%d has no spool body (%s): set aside as ERROR",
                      entry.msgid, entry.id, entry.path)
            queue_store.finish(session, entry, Action.ERROR, now=now, error=MISSING_BODY)
            done += 1
    return done


class SpoolSweeper(Periodic):
    """Sweeps at start and every `interval` seconds; a failed sweep is logged and retried."""

    thread_name = "spool-sweep"
    tick_at_start = True

    def __init__(self, store: Store, spool: Spool, *, grace: float = DEFAULT_GRACE,
                 interval: float = DEFAULT_INTERVAL, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._store = store
        self._spool = spool
        self.grace = grace
        self.interval = interval
        self._clock = clock
        self.last: SweepReport | None = None

    def tick(self) -> SweepReport | None:
        try:
            self.last = sweep(self._store, self._spool, now=self._clock(), grace=self.grace)
        except Exception:
            log.exception("spool sweep failed")
            return None
        return self.last

