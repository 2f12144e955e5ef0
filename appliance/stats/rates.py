"""rate(): sliding-window limits kept in the store (shared, durable) with an in-memory deny path.

Every call that may be allowed is one store transaction that locks the key's `rate_window`
row, prunes expired hits, counts the rest and, below the limit, records the hit: exact across
the node's workers and processes, and across restarts. Refused calls are not counted, so a
client that keeps trying gets through again as old hits leave the window.

The fast path only ever refuses: after the store said the window is full until `deny_until`,
calls before then are refused from memory (hits only leave a window by expiry, or by
hslRateClear, which drops the memory of this process; other processes re-check after
`cache_ttl` seconds).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from appliance.db.engine import Store
from appliance.db.models_stats import RateHit, RateWindow
from appliance.stats.patterns import check_page, match
from appliance.stats.window import validate

RateKey = tuple[str, str, int]


class Rates:
    """The node's rate() engine; thread-safe, one per node process."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time, cache_ttl: float = 1.0) -> None:
        self._store = store
        self._clock = clock
        self._ttl = cache_ttl
        self._lock = threading.Lock()
        # key -> (deny_until, fetched_at, count it was computed for)
        self._full: dict[RateKey, tuple[float, float, int]] = {}

    def rate(self, ns: str, entry: str, count: int, interval: int) -> bool:
        """True while `entry` in `ns` was counted fewer than `count` times in `interval` s."""
        count, interval = _whole(count), _whole(interval)
        validate(ns, entry, count, interval)
        key = (ns, entry, interval)
        now = self._clock()
        full = self._full.get(key)  # dict reads are atomic; the lock guards the writes
        if full is not None and full[2] == count and now < full[0] and now - full[1] < self._ttl:
            return False
        with self._store.transaction() as session:
            allowed, deny_until = count_hit(session, ns, entry, count, interval, now=now)
        with self._lock:
            if deny_until > now:
                self._full[key] = (deny_until, now, count)
            else:
                self._full.pop(key, None)
        return allowed

    def forget(self, ns: str = "", entry: str = "") -> None:
        """Drop remembered full windows (after hslRateClear); empty matches any."""
        with self._lock:
            for key in [k for k in self._full if (not ns or k[0] == ns) and (not entry or k[1] == entry)]:
                del self._full[key]

    def clear(self, session: Session, ns: str, entry: str = "") -> int:
        """clear_rates() and forget what this process remembered about those keys."""
        cleared = clear_rates(session, ns, entry)
        self.forget()
        return cleared

    def expire_memory(self, now: float) -> None:
        with self._lock:
            for key in [k for k, v in self._full.items() if v[0] <= now or now - v[1] >= self._ttl]:
                del self._full[key]


def _whole(value: int | float) -> int:
    """Lua hands numbers over as floats sometimes; 3600.0 means 3600."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value  # type: ignore[return-value]


def _key_of(model: type[RateHit] | type[RateWindow], ns: str, entry: str, interval: int):  # type: ignore[no-untyped-def]
    return and_(model.ns == ns, model.entry == entry, model.interval == interval)


def count_hit(session: Session, ns: str, entry: str, count: int, interval: int, *, now: float) -> tuple[bool, float]:
    """Check and count one call; return (allowed, refused-until time or 0.0)."""
    validate(ns, entry, count, interval)
    _lock_window(session, ns, entry, interval, now=now)
    session.execute(delete(RateHit).where(_key_of(RateHit, ns, entry, interval), RateHit.ts <= now - interval))
    seen = session.scalar(select(func.count()).select_from(RateHit).where(_key_of(RateHit, ns, entry, interval)))
    allowed = (seen or 0) < count
    if allowed:
        session.add(RateHit(ns=ns, entry=entry, interval=interval, ts=now))
        session.execute(update(RateWindow).where(_key_of(RateWindow, ns, entry, interval)).values(expires=now + interval))
        seen = (seen or 0) + 1
    session.flush()
    if seen < count:
        return allowed, 0.0
    # The window stays full until its count-th newest hit leaves it.
    kth = session.scalar(
        select(RateHit.ts).where(_key_of(RateHit, ns, entry, interval))
        .order_by(RateHit.ts.desc()).offset(count - 1).limit(1)
    )
    return allowed, (kth or now) + interval


def _lock_window(session: Session, ns: str, entry: str, interval: int, *, now: float) -> None:
    """Create the key's row or lock it (PostgreSQL row lock; SQLite writers are serial)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(RateWindow).values(ns=ns, entry=entry, interval=interval, expires=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[RateWindow.ns, RateWindow.entry, RateWindow.interval],
        set_={"expires": RateWindow.expires},
    )
    session.execute(stmt)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RateRow:
    ns: str
    entry: str
    count: int
    interval: int
    expires: float


def list_rates(
    session: Session, ns: str = "", entry: str = "", *, offset: int = 0, limit: int = 100,
    now: float | None = None,
) -> list[RateRow]:
    """Keys with hits in their window (ns and entry: exact, `%` pattern, or empty for any)."""
    check_page(offset, limit)
    now = time.time() if now is None else now
    seen = func.count(RateHit.id)
    stmt = (
        select(RateWindow.ns, RateWindow.entry, RateWindow.interval, func.max(RateHit.ts), seen)
        .join(RateHit, and_(RateHit.ns == RateWindow.ns, RateHit.entry == RateWindow.entry,
                            RateHit.interval == RateWindow.interval, RateHit.ts > now - RateWindow.interval))
        .where(match(RateWindow.ns, ns), match(RateWindow.entry, entry))
        .group_by(RateWindow.ns, RateWindow.entry, RateWindow.interval)
        .order_by(RateWindow.ns, RateWindow.entry, RateWindow.interval)
        .offset(offset).limit(limit)
    )
    return [
        RateRow(ns=r[0], entry=r[1], interval=r[2], expires=r[3] + r[2], count=r[4])
        for r in session.execute(stmt)
    ]


def clear_rates(session: Session, ns: str, entry: str = "") -> int:
    """Forget the matching keys' hits (ns and entry: exact, `%` pattern, empty entry = all)."""
    where_w = and_(match(RateWindow.ns, ns), match(RateWindow.entry, entry))
    where_h = and_(match(RateHit.ns, ns), match(RateHit.entry, entry))
    session.execute(delete(RateHit).where(where_h).execution_options(synchronize_session=False))
    result = session.execute(delete(RateWindow).where(where_w).execution_options(synchronize_session=False))
    session.flush()
    return result.rowcount or 0


def prune_rates(session: Session, *, now: float) -> int:
    """Remove keys whose every hit has left the window (housekeeping); return how many."""
    result = session.execute(
        delete(RateWindow).where(RateWindow.expires <= now).execution_options(synchronize_session=False)
    )
    orphan = ~exists().where(
        RateWindow.ns == RateHit.ns, RateWindow.entry == RateHit.entry, RateWindow.interval == RateHit.interval
    )
    session.execute(delete(RateHit).where(orphan).execution_options(synchronize_session=False))
    session.flush()
    return result.rowcount or 0
