"""Suspensions: delivery of every entry matching an HQL filter is held until they expire or are
removed, including mail that arrives while they last.

Held entries keep their state and their retry count (delivery never leases them). When a
suspension ends its entries are released spread over the retry interval, so that a large
backlog does not reach the next hop at once.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Sequence

from sqlalchemy import ColumnElement, String, and_, func, insert, literal, not_, or_, select, update
from sqlalchemy.orm import Session

from appliance import hql
from appliance.db.models import QueueEntry
from appliance.db.models_timeline import MessageEvent, Suspension
from appliance.errors import Conflict, InvalidInput, NotFound
from appliance.queue import events
from appliance.types import QueueState

ACTIVE, EXPIRED, REMOVED = "active", "expired", "removed"
MAX_TTL = 366 * 86400
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def create(
    session: Session, *, filter: str, ttl: int, reason: str, author: str, now: float,
    suspension_id: str = "",
) -> Suspension:
    """A new active suspension (its filter checked first); entries already queued that match
    get a `suspended` event. `suspension_id` lets cluster helpers give every node the same id."""
    if not filter.strip():
        raise InvalidInput("a suspension needs a filter (suspending everything is a HOLD of the queue)")
    condition = hql.compile_filter(filter)  # a FilterError names the position
    if not 0 < ttl <= MAX_TTL:
        raise InvalidInput(f"ttl must be 1 to {MAX_TTL} seconds")
    if len(reason) > 1000:
        raise InvalidInput("reason must be at most 1000 characters")
    sid = suspension_id or secrets.token_hex(6)
    if not _ID.match(sid):
        raise InvalidInput("a suspension id is 1 to 64 of A-Z a-z 0-9 _ . -")
    if session.get(Suspension, sid) is not None:
        raise Conflict(f"suspension {sid} exists already")
    row = Suspension(id=sid, filter=filter, reason=reason, author=author, created=now,
                     expires=now + ttl, state=ACTIVE, ended=0.0)
    session.add(row)
    session.flush()
    _mark(session, row, condition, "suspended", now=now)
    return row


def get(session: Session, suspension_id: str) -> Suspension:
    row = session.get(Suspension, suspension_id)
    if row is None:
        raise NotFound(f"no suspension {suspension_id}")
    return row


def remove(session: Session, suspension_id: str, *, now: float, spread: float) -> int:
    """End an active suspension now; returns how many entries it released."""
    row = get(session, suspension_id)
    if row.state != ACTIVE:
        raise Conflict(f"suspension {suspension_id} has already ended ({row.state})")
    return _end(session, row, REMOVED, now=now, spread=spread)


def expire_due(session: Session, *, now: float, spread: float) -> list[str]:
    """End every active suspension whose time is up; returns their ids."""
    due = list(session.scalars(
        select(Suspension).where(Suspension.state == ACTIVE, Suspension.expires <= now)))
    ended = []
    for row in due:
        # Conditional, so that of two processes expiring at once only one releases.
        done = session.execute(update(Suspension).where(
            Suspension.id == row.id, Suspension.state == ACTIVE).values(state=EXPIRED, ended=now))
        if getattr(done, "rowcount", 0):
            session.refresh(row)
            _release(session, row, now=now, spread=spread)
            ended.append(row.id)
    return ended


def listing(session: Session, *, now: float, include_ended: bool = False
            ) -> list[tuple[Suspension, int]]:
    """Suspensions (active ones, or all), newest first, with how many entries each holds now."""
    stmt = select(Suspension).order_by(Suspension.created.desc(), Suspension.id)
    if not include_ended:
        stmt = stmt.where(Suspension.state == ACTIVE)
    out = []
    for row in session.scalars(stmt):
        held = 0
        if row.state == ACTIVE:
            held = int(session.scalar(select(func.count()).select_from(QueueEntry).where(
                _holdable(), hql.compile_filter(row.filter))) or 0)
        out.append((row, held))
    return out


def holding(session: Session, entry_id: int) -> list[Suspension]:
    """The active suspensions whose filter matches one entry."""
    found = []
    for row in session.scalars(select(Suspension).where(Suspension.state == ACTIVE)
                               .order_by(Suspension.created)):
        hit = session.scalar(select(QueueEntry.id).where(
            QueueEntry.id == entry_id, hql.compile_filter(row.filter)))
        if hit is not None:
            found.append(row)
    return found


# Read in every intake and claim transaction: built once, run on the connection (Core),
# not through the ORM session, whose execution costs several times the query itself.
_ACTIVE_HOLDS = (select(Suspension.id, Suspension.expires)
                 .where(Suspension.state == ACTIVE).order_by(Suspension.id))


class Holds:
    """The active suspensions of a process, their filters compiled once per change.

    `refresh()` reads the (small) table in the caller's transaction: which suspensions are
    active and whether one has come to its end. Filters are compiled only when that set of
    ids changes, never per entry.
    """

    def __init__(self) -> None:
        self._key: tuple[str, ...] = ()
        self._compiled: list[tuple[Suspension, ColumnElement[bool]]] = []
        self.compilations = 0
        self._lock = threading.Lock()  # delivery's workers claim from several threads

    def refresh(self, session: Session, *, now: float, spread: float | None = None) -> list[str]:
        """Follow the active set; with `spread`, first end (and release) what is due and
        return those ids. Without it (intake) a suspension past its end is just not followed."""
        rows = session.connection().execute(_ACTIVE_HOLDS).all()
        expired: list[str] = []
        if spread is not None and any(expires <= now for _, expires in rows):
            expired = expire_due(session, now=now, spread=spread)
        key = tuple(sid for sid, expires in rows
                    if sid not in expired and (spread is not None or expires > now))
        with self._lock:
            if key != self._key:
                self._follow(session, key)
        return expired

    def _follow(self, session: Session, key: tuple[str, ...]) -> None:
        active = list(session.scalars(select(Suspension).where(Suspension.id.in_(key))
                                      .order_by(Suspension.id)))
        compiled = [(row, hql.compile_filter(row.filter)) for row in active]
        for row, _ in compiled:
            session.expunge(row)
        self._compiled, self._key = compiled, key
        self.compilations += 1

    @property
    def active(self) -> bool:
        return bool(self._compiled)

    def exclusion(self) -> ColumnElement[bool] | None:
        """`not (held by any suspension)`, for delivery's claim; None when nothing is held."""
        if not self._compiled:
            return None
        return not_(or_(*[cond for _, cond in self._compiled]))

    def mark_new(self, session: Session, entry_ids: Sequence[int], *, now: float) -> None:
        """`suspended` events for newly queued entries that an active suspension holds."""
        if not self._compiled or not entry_ids:
            return
        for row, cond in self._compiled:
            _mark(session, row, and_(QueueEntry.id.in_(list(entry_ids)), cond), "suspended", now=now)


def _holdable() -> ColumnElement[bool]:
    """What a suspension holds: entries waiting for delivery (HOLD stays an operator's hold)."""
    return QueueEntry.state.in_([QueueState.ACTIVE.value, QueueState.DEFER.value])


def _end(session: Session, row: Suspension, state: str, *, now: float, spread: float) -> int:
    row.state = state
    row.ended = now
    session.flush()
    return _release(session, row, now=now, spread=spread)


def _release(session: Session, row: Suspension, *, now: float, spread: float) -> int:
    """Entries this suspension held get their next attempt spread evenly over `spread`
    seconds from now (none earlier than it was already due), and a `released` event."""
    condition = hql.compile_filter(row.filter)
    held = list(session.execute(select(QueueEntry.id, QueueEntry.next_retry)
                                .where(_holdable(), condition).order_by(QueueEntry.id)))
    if not held:
        return 0
    step = spread / len(held) if spread > 0 else 0.0
    session.execute(update(QueueEntry), [
        {"id": entry_id, "next_retry": max(next_retry, now + index * step)}
        for index, (entry_id, next_retry) in enumerate(held)])
    _mark(session, row, QueueEntry.id.in_([entry_id for entry_id, _ in held]), "released", now=now)
    return len(held)


def _mark(session: Session, row: Suspension, condition: ColumnElement[bool], kind: str, *,
          now: float) -> None:
    """One INSERT ... SELECT of an event for every holdable entry matching `condition`."""
    detail = events.row(events.Event(msgid="", kind=kind, ts=now, detail={
        "suspension": row.id, "reason": row.reason, "by": row.author,
        "until": f"{row.expires:.0f}"}))["detail"]
    source = select(
        QueueEntry.msgid, QueueEntry.id, literal(now), literal(kind, String(16)),
        literal(detail, String()), literal("", String(36)),
    ).where(_holdable(), condition)
    session.execute(insert(MessageEvent).from_select(
        ["msgid", "queueid", "ts", "kind", "detail", "ref"], source))


__all__ = ["ACTIVE", "EXPIRED", "REMOVED", "Holds", "create", "expire_due", "holding", "listing",
           "remove"]
