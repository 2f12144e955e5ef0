"""Saved HQL queries per user with a threshold: above N entries for M minutes raises an alert.

Functions take the session first and flush; `step` is the pure state machine housekeeping runs
for each query at every evaluation.
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance import hql
from appliance.db.models import User
from appliance.db.models_timeline import SavedQuery
from appliance.errors import Conflict, InvalidInput, NotFound

OK, FIRING = "ok", "firing"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_ADDRESS = re.compile(r"^[^\s<>@]+@[^\s<>@]+$")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Transition:
    """A query that changed state at one evaluation."""

    owner: str
    name: str
    filter: str
    threshold: int
    minutes: float
    count: int
    state: str  # the new state: FIRING or OK
    since: float
    mail_to: str
    webhook: str


def add(session: Session, *, owner: str, name: str, filter: str, threshold: int, minutes: float,
        mail_to: str = "", webhook: str = "", now: float) -> SavedQuery:
    if not _NAME.match(name):
        raise InvalidInput("an alert name is 1 to 128 of A-Z a-z 0-9 _ . -")
    hql.compile_filter(filter)  # a FilterError names the position
    if threshold < 0:
        raise InvalidInput("threshold must be 0 or more")
    if not 0 <= minutes <= 7 * 24 * 60:
        raise InvalidInput("minutes must be 0 to 10080")
    if mail_to and not _ADDRESS.match(mail_to):
        raise InvalidInput(f"mail_to {mail_to!r} is not an address")
    if webhook:
        parts = urlsplit(webhook)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput("webhook must be an http:// or https:// URL")
    if _find(session, owner, name) is not None:
        raise Conflict(f"alert {name} exists already")
    row = SavedQuery(owner=owner, name=name, filter=filter, threshold=threshold, minutes=minutes,
                     mail_to=mail_to, webhook=webhook, created=now, state=OK, since=now,
                     above_since=0.0, last_count=0, last_checked=0.0)
    session.add(row)
    session.flush()
    return row


def delete(session: Session, *, owner: str, name: str) -> None:
    row = _find(session, owner, name)
    if row is None:
        raise NotFound(f"no alert {name} of {owner}")
    session.delete(row)
    session.flush()


def listing(session: Session, *, owner: str | None = None) -> list[SavedQuery]:
    """One user's saved queries (every user's with owner None), by owner and name."""
    stmt = select(SavedQuery).order_by(SavedQuery.owner, SavedQuery.name)
    if owner is not None:
        stmt = stmt.where(SavedQuery.owner == owner)
    return list(session.scalars(stmt))


def step(row: SavedQuery, count: int, now: float) -> str | None:
    """Move one query's state for a fresh count; returns the new state when it changed.

    Firing needs the count above the threshold at every evaluation for `minutes`; one
    evaluation at or below it clears a firing alert.
    """
    row.last_count = count
    row.last_checked = now
    if count > row.threshold:
        if not row.above_since:
            row.above_since = now
        if row.state != FIRING and now - row.above_since >= row.minutes * 60:
            row.state, row.since = FIRING, now
            return FIRING
        return None
    row.above_since = 0.0
    if row.state == FIRING:
        row.state, row.since = OK, now
        return OK
    return None


def condition_text(session: Session, row: SavedQuery) -> str | None:
    """The query as its owner may run it (their restriction joined with `&&`), None when the
    owner no longer exists."""
    user = session.scalars(select(User).where(User.name == row.owner)).one_or_none()
    if user is None:
        return None
    return hql.restrict(user.restriction or "", row.filter)


def transition(row: SavedQuery) -> Transition:
    return Transition(owner=row.owner, name=row.name, filter=row.filter, threshold=row.threshold,
                      minutes=row.minutes, count=row.last_count, state=row.state, since=row.since,
                      mail_to=row.mail_to, webhook=row.webhook)


def _find(session: Session, owner: str, name: str) -> SavedQuery | None:
    return session.scalars(select(SavedQuery).where(SavedQuery.owner == owner,
                                                    SavedQuery.name == name)).one_or_none()
