"""rate(): sliding windows held in memory (authoritative in the node process), written behind to the store.

Every worker of a node (SMTP sessions, delivery, policy, SOAP) runs in the one `appliance run`
process and shares one `Rates`, so a lock-guarded dict of windows is exact and costs
microseconds. The store is only the memory's backing copy: `Rates(store)` loads the live hits
at start; each counted hit is queued, and the stats flusher writes the queue in its one
transaction per flush (every `flush_interval` seconds and on stop).

Durability trade-off: a crash (kill -9, power loss) loses the hits counted since the last
successful flush, at most one flush interval's worth while the store is healthy, so after such
a restart a client may get that many extra calls through; a clean stop loses nothing. A failed
flush (store unavailable) keeps its hits queued for the next one. Only the node process may
count hits: another process counting on the same store neither sees nor is seen by the node.

Reads and clears go through the memory: `Rates.list()` is live; `Rates.clear()` empties the
matching windows (and their queued hits) and deletes their stored hits in the caller's
transaction, serialised with flushes so a flush cannot write back a cleared hit. The module
functions `list_rates`/`clear_rates`/`prune_rates` work on the stored copy alone (what a
restart would load; up to one flush interval behind). Memory is bounded: windows whose hits
have all expired are dropped by `prune()` (the flusher calls it every `prune_every` seconds).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

from sqlalchemy import CursorResult, Table, and_, delete, event, func, insert, select, text
from sqlalchemy.orm import Session

from appliance.db.engine import Store
from appliance.db.models_stats import RateHit
from appliance.stats.patterns import check_page, match, matches
from appliance.stats.window import SlidingWindow, validate

log = logging.getLogger(__name__)

RateKey = tuple[str, str, int]  # (ns, entry, interval): windows of different intervals are apart
Pending = list[tuple[RateKey, float]]  # counted hits not yet in the store, oldest first
# pg_advisory_xact_lock key ("rate") that serialises flushes and clears on PostgreSQL.
_ADVISORY_KEY = 0x72617465
_HITS = cast(Table, RateHit.__table__)  # the table, not the entity: inserts skip the ORM


@dataclasses.dataclass(frozen=True, kw_only=True)
class RateRow:
    ns: str
    entry: str
    count: int  # hits in the window now
    interval: int
    expires: float  # when the newest hit leaves the window


class Rates:
    """The node's rate() engine; thread-safe, one per node process (see the module docstring)."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[RateKey, SlidingWindow] = load_windows(store, now=clock())
        self._pending: Pending = []

    def rate(self, ns: str, entry: str, count: int, interval: int) -> bool:
        """True while `entry` in `ns` was counted fewer than `count` times in `interval` s."""
        if type(count) is not int or type(interval) is not int:
            count, interval = _whole(count), _whole(interval)
        key = (ns, entry, interval)
        now = self._clock()
        try:
            with self._lock:
                window = self._windows.get(key)
                # A key in memory was validated when it entered: only `count` needs a look.
                if window is not None and type(count) is int and count > 0:
                    if not window.hit(now, count, interval):
                        return False
                    self._pending.append((key, now))
                    return True
        except TypeError:  # an unhashable ns or entry: validate() says what is wrong
            pass
        return self._first(key, count, now)

    def _first(self, key: RateKey, count: int, now: float) -> bool:
        """The slow path: check the arguments of a key new to memory, then count it."""
        validate(key[0], key[1], count, key[2])
        with self._lock:
            window = self._windows.setdefault(key, SlidingWindow())
            if not window.hit(now, count, key[2]):
                return False
            self._pending.append((key, now))
            return True

    def list(self, ns: str = "", entry: str = "", *, offset: int = 0, limit: int = 100) -> list[RateRow]:
        """Live keys with hits in their window (ns and entry: exact, `%` pattern, empty for any)."""
        check_page(offset, limit)
        now = self._clock()
        with self._lock:
            rows = [
                RateRow(ns=k[0], entry=k[1], interval=k[2], count=len(w.hits), expires=w.hits[-1] + k[2])
                for k, w in self._windows.items()
                if matches(k[0], ns) and matches(k[1], entry) and w.seen(now, k[2])
            ]
        rows.sort(key=lambda r: (r.ns, r.entry, r.interval))
        return rows[offset:offset + limit]

    def clear(self, session: Session, ns: str, entry: str = "") -> int:
        """Forget the matching keys in memory and in the store (in `session`); return how many
        had hits in their window. If the transaction rolls back, the memory is put back."""
        _serialise(session)  # no flush runs between here and our commit
        now = self._clock()
        with self._lock:
            gone = {k: w for k, w in self._windows.items() if matches(k[0], ns) and matches(k[1], entry)}
            for key in gone:
                del self._windows[key]
            queued = [p for p in self._pending if p[0] in gone]
            self._pending = [p for p in self._pending if p[0] not in gone]
        event.listen(session, "after_rollback", lambda _s: self._put_back(gone, queued), once=True)
        clear_rates(session, ns, entry)
        return sum(1 for k, w in gone.items() if w.seen(now, k[2]))

    def forget(self, ns: str, entry: str = "") -> int:
        """The memory half of `clear()`, for a caller in another process that deletes the
        stored hits in its own transaction (this process must not wait for the write lock
        that caller holds). A flush already under way may still store a few of the hits."""
        now = self._clock()
        with self._lock:
            gone = {k: w for k, w in self._windows.items() if matches(k[0], ns) and matches(k[1], entry)}
            for key in gone:
                del self._windows[key]
            self._pending = [p for p in self._pending if p[0] not in gone]
        return sum(1 for k, w in gone.items() if w.seen(now, k[2]))

    def _put_back(self, windows: dict[RateKey, SlidingWindow], queued: Pending) -> None:
        """Undo a clear whose transaction rolled back (merging hits counted since)."""
        with self._lock:
            for key, old in windows.items():
                since = self._windows.get(key)
                self._windows[key] = SlidingWindow(old.hits + (since.hits if since else []))
            self._pending = queued + self._pending

    def persist(self, session: Session) -> Pending:
        """Write the queued hits in `session` and return them. The caller commits; if the commit
        fails it must `requeue()` what this returned, or those hits are never stored."""
        _serialise(session)  # take the queue only once no clear can be between it and the store
        with self._lock:
            pending, self._pending = self._pending, []
        try:
            if pending:
                # Core executemany: the ORM's bulk insert costs several times more per row.
                session.execute(insert(_HITS), [
                    {"ns": k[0], "entry": k[1], "interval": k[2], "ts": ts} for k, ts in pending])
                session.flush()
        except BaseException:
            self.requeue(pending)
            raise
        return pending

    def requeue(self, pending: Pending) -> None:
        """Queue again the hits of a failed flush that memory still holds (a hit cleared or
        expired since is not written back)."""
        with self._lock:
            windows = self._windows
            keep = [(k, ts) for k, ts in pending if k in windows and windows[k].holds(ts)]
            self._pending = keep + self._pending

    def save(self) -> int:
        """Persist the queue in a transaction of its own; return how many hits were written."""
        pending: Pending = []
        try:
            with self._store.transaction() as session:
                pending = self.persist(session)
        except BaseException:
            self.requeue(pending)
            raise
        return len(pending)

    def pending(self) -> int:
        return len(self._pending)

    def keys(self) -> int:
        return len(self._windows)

    def prune(self, now: float | None = None) -> int:
        """Drop windows whose every hit has expired (bounded memory); return how many."""
        now = self._clock() if now is None else now
        with self._lock:
            items = list(self._windows.items())
        expired = [k for k, w in items if not w.hits or w.hits[-1] <= now - k[2]]
        for chunk in _chunks(expired, 1000):  # short holds of the lock: rate() keeps flowing
            with self._lock:
                for key in chunk:
                    w = self._windows.get(key)
                    if w is not None and (not w.hits or w.hits[-1] <= now - key[2]):
                        del self._windows[key]
        return len(expired)


def _whole(value: int | float) -> int:
    """Lua hands numbers over as floats sometimes; 3600.0 means 3600."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value  # type: ignore[return-value]


def _chunks(keys: list[RateKey], size: int) -> Iterable[list[RateKey]]:
    for i in range(0, len(keys), size):
        yield keys[i:i + size]


def _serialise(session: Session) -> None:
    """Hold the store's lock that orders flushes and clears until this transaction ends
    (SQLite: the first statement begins IMMEDIATE, writers are serial; PostgreSQL: an
    advisory transaction lock)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_KEY})
    else:
        session.execute(text("SELECT 1"))


def load_windows(store: Store, *, now: float) -> dict[RateKey, SlidingWindow]:
    """The stored hits still inside their windows, as windows (what a node starts with)."""
    stmt = (
        select(RateHit.ns, RateHit.entry, RateHit.interval, RateHit.ts)
        .where(RateHit.ts > now - RateHit.interval)
        .order_by(RateHit.ns, RateHit.entry, RateHit.interval, RateHit.ts)
    )
    with store.transaction(read_only=True) as session:
        rows = session.execute(stmt).all()
    return {
        key: SlidingWindow(ts for *_, ts in group)
        for key, group in itertools.groupby(rows, key=lambda r: (r[0], r[1], r[2]))
    }


def _key_matches(ns: str, entry: str):  # type: ignore[no-untyped-def]
    return and_(match(RateHit.ns, ns), match(RateHit.entry, entry))


def list_rates(
    session: Session, ns: str = "", entry: str = "", *, offset: int = 0, limit: int = 100,
    now: float | None = None,
) -> list[RateRow]:
    """The stored copy's keys with hits in their window (up to one flush behind `Rates.list`)."""
    check_page(offset, limit)
    now = time.time() if now is None else now
    stmt = (
        select(RateHit.ns, RateHit.entry, RateHit.interval, func.max(RateHit.ts), func.count())
        .where(_key_matches(ns, entry), RateHit.ts > now - RateHit.interval)
        .group_by(RateHit.ns, RateHit.entry, RateHit.interval)
        .order_by(RateHit.ns, RateHit.entry, RateHit.interval)
        .offset(offset).limit(limit)
    )
    return [
        RateRow(ns=r[0], entry=r[1], interval=r[2], expires=r[3] + r[2], count=r[4])
        for r in session.execute(stmt)
    ]


def clear_rates(session: Session, ns: str, entry: str = "") -> int:
    """Delete the matching keys' stored hits (ns and entry: exact, `%` pattern, empty entry =
    all); return how many keys had any. A running node's memory is cleared by `Rates.clear`."""
    keys = session.scalar(
        select(func.count()).select_from(
            select(RateHit.ns, RateHit.entry, RateHit.interval).where(_key_matches(ns, entry)).distinct().subquery()
        )
    )
    session.execute(delete(RateHit).where(_key_matches(ns, entry)).execution_options(synchronize_session=False))
    session.flush()
    return int(keys or 0)


def count_stored_hit(session: Session, *, ns: str, entry: str, count: int, interval: int,
                     now: float) -> bool:
    """rate() against the stored hits alone, for counters that several processes share (each
    SMTP receiver, say): under the store's serialising lock, True and the hit written while
    fewer than `count` hits are in the window. Costs a write transaction: not for hot paths."""
    validate(ns, entry, count, interval)
    _serialise(session)
    seen = session.scalar(select(func.count()).select_from(RateHit).where(
        RateHit.ns == ns, RateHit.entry == entry, RateHit.interval == interval,
        RateHit.ts > now - interval))
    if int(seen or 0) >= count:
        return False
    session.execute(insert(_HITS), [{"ns": ns, "entry": entry, "interval": interval, "ts": now}])
    return True


def prune_rates(session: Session, *, now: float) -> int:
    """Delete stored hits that have left their window (housekeeping); return how many."""
    result = cast(CursorResult[Any], session.execute(
        delete(RateHit).where(RateHit.ts <= now - RateHit.interval).execution_options(synchronize_session=False)
    ))
    session.flush()
    return result.rowcount or 0
