"""stat() counters: batched in memory (1+1+1 = 3 written once), flushed to the store."""

from __future__ import annotations

import dataclasses
import logging
import threading

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from appliance.db.models_stats import StatCounter
from appliance.errors import InvalidInput
from appliance.stats.actions import Key, fold_pending_actions
from appliance.stats.patterns import check_page, match

log = logging.getLogger(__name__)

MAX_KEY = 255


class Counters:
    """The node's in-memory batch of stat() calls; thread-safe, one per node process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batch: dict[Key, int] = {}

    def stat(self, key1: str, key2: str = "", key3: str = "", n: int = 1) -> None:
        """Count `n` for the key; never touches the store (the flusher does, later)."""
        key = (key1, key2, key3)
        try:
            with self._lock:
                batch = self._batch
                # A key already in the batch was checked when it entered: only n needs a look.
                if key in batch and type(n) is int and n > 0:
                    batch[key] += n
                    return
        except TypeError:  # an unhashable key part
            pass
        self._first(key, n)

    def _first(self, key: Key, n: int) -> None:
        """The slow path: check a key new to this batch, then count it."""
        if not all(type(k) is str for k in key) or type(n) is not int or n < 1 \
                or not key[0] or any(len(k) > MAX_KEY for k in key):
            raise InvalidInput(
                f"stat keys must be strings of 1 to {MAX_KEY} characters (key2, key3 may be empty), n 1 or more")
        with self._lock:
            batch = self._batch
            batch[key] = batch.get(key, 0) + n

    def take(self) -> dict[Key, int]:
        """Hand over the batch and start a new one."""
        with self._lock:
            batch, self._batch = self._batch, {}
        return batch

    def restore(self, batch: dict[Key, int]) -> None:
        """Put back a batch whose flush did not commit, so no count is lost."""
        with self._lock:
            for key, n in batch.items():
                self._batch[key] = self._batch.get(key, 0) + n

    def pending(self) -> dict[Key, int]:
        with self._lock:
            return dict(self._batch)

    def flush(self, session: Session, *, now: float) -> dict[Key, int]:
        """Add the batch and the pending mail actions to the store; return the in-memory part.

        The caller commits; if the commit fails it must `restore()` the returned batch (the
        pending actions roll back by themselves).
        """
        batch = self.take()
        try:
            totals = dict(batch)
            for key, n in fold_pending_actions(session).items():
                totals[key] = totals.get(key, 0) + n
            add_counts(session, totals, now=now)
        except BaseException:
            self.restore(batch)
            raise
        return batch


def add_counts(session: Session, counts: dict[Key, int], *, now: float) -> None:
    """Upsert: add to existing counters (keeping `created`), create missing ones."""
    if not counts:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(StatCounter)
    stmt = stmt.on_conflict_do_update(
        index_elements=[StatCounter.key1, StatCounter.key2, StatCounter.key3],
        set_={"count": StatCounter.count + stmt.excluded.count, "updated": stmt.excluded.updated},
    )
    # Sorted, so that two flushing processes lock rows in the same order (no deadlock).
    rows = [
        {"key1": k[0], "key2": k[1], "key3": k[2], "count": n, "created": now, "updated": now}
        for k, n in sorted(counts.items())
    ]
    session.execute(stmt, rows)
    session.flush()


@dataclasses.dataclass(frozen=True, kw_only=True)
class StatRow:
    key1: str
    key2: str
    key3: str
    count: int
    created: float
    updated: float


def list_stats(
    session: Session, key1: str = "", key2: str = "", key3: str = "", *, offset: int = 0, limit: int = 100,
) -> list[StatRow]:
    """Counters matching the patterns (exact, `%` pattern, or empty for any), ordered by key."""
    check_page(offset, limit)
    stmt = (
        select(StatCounter)
        .where(match(StatCounter.key1, key1), match(StatCounter.key2, key2), match(StatCounter.key3, key3))
        .order_by(StatCounter.key1, StatCounter.key2, StatCounter.key3)
        .offset(offset)
        .limit(limit)
    )
    return [
        StatRow(key1=r.key1, key2=r.key2, key3=r.key3, count=r.count, created=r.created, updated=r.updated)
        for r in session.scalars(stmt)
    ]


def clear_stats(session: Session, key1: str = "", key2: str = "", key3: str = "") -> int:
    """Delete the matching counters; return how many."""
    result = session.execute(
        delete(StatCounter).where(
            match(StatCounter.key1, key1), match(StatCounter.key2, key2), match(StatCounter.key3, key3)
        ).execution_options(synchronize_session=False)
    )
    session.flush()
    return _rowcount(result) or 0


def sum_counts(session: Session, key1: str, key2: str = "", key3: str = "") -> int:
    """Total of the matching counters (what a graphed counter plots)."""
    total = session.scalar(
        select(func.coalesce(func.sum(StatCounter.count), 0)).where(
            match(StatCounter.key1, key1), match(StatCounter.key2, key2), match(StatCounter.key3, key3)
        )
    )
    return int(total or 0)


def _rowcount(result: object) -> int:
    """Rows an UPDATE/DELETE touched (execute() is typed as Result; DML gives a CursorResult)."""
    return int(getattr(result, "rowcount", 0) or 0)
