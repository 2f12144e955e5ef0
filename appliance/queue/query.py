"""Queue and history search, counts and qshape-style group-by over HQL conditions."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from appliance.db.models import HistoryEntry, QueueEntry
from appliance.errors import InvalidInput
from appliance.hql import compile_filter

MAX_LIMIT = 10000

# qshape's age buckets, in minutes: <5m, <10m, <20m, ... <1280m, and older (index 9).
BUCKET_MINUTES = (5, 10, 20, 40, 80, 160, 320, 640, 1280)
BUCKETS = len(BUCKET_MINUTES) + 1

# Group-by field -> QueueEntry column name.
GROUP_FIELDS = {
    "to-domain": "rcpt_domain", "from-domain": "sender_domain", "transport": "transport",
    "queue": "state", "error": "error", "server": "listener", "sasl": "sasl",
}

Where = ColumnElement[bool] | str | None


@dataclasses.dataclass(frozen=True, slots=True)
class GroupRow:
    key: str
    count: int
    buckets: list[int]  # BUCKETS counts, youngest first


def age_bucket(age_seconds: float) -> int:
    """The qshape bucket of an entry `age_seconds` old (a clock skewed into the future is 0)."""
    for index, minutes in enumerate(BUCKET_MINUTES):
        if age_seconds < minutes * 60:
            return index
    return len(BUCKET_MINUTES)


def as_condition(where: Where, history: bool) -> ColumnElement[bool] | None:
    """A compiled condition; an HQL string is compiled here for callers that hold text."""
    if isinstance(where, str):
        return compile_filter(where, history=history)
    return where


def _model(history: bool) -> Any:
    return HistoryEntry if history else QueueEntry


def _check_page(offset: int, limit: int) -> None:
    for name, value in (("offset", offset), ("limit", limit)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidInput(f"{name} must be a whole number >= 0, not {value!r}")
    if limit > MAX_LIMIT:
        raise InvalidInput(f"limit must be at most {MAX_LIMIT}, not {limit}")


def search(
    session: Session, where: Where, *, offset: int, limit: int, history: bool = False,
    with_total: bool = False,
) -> tuple[list[Any], int | None]:
    """One page of matching entries, newest `ts0` first (then highest id), and the total when asked."""
    _check_page(offset, limit)
    model = _model(history)
    cond = as_condition(where, history)
    stmt = select(model).order_by(model.ts0.desc(), model.id.desc()).offset(offset).limit(limit)
    if cond is not None:
        stmt = stmt.where(cond)
    rows = list(session.scalars(stmt)) if limit else []
    total = count(session, cond, history=history) if with_total else None
    return rows, total


def count(session: Session, where: Where, *, history: bool = False) -> int:
    model = _model(history)
    stmt = select(func.count()).select_from(model)
    cond = as_condition(where, history)
    if cond is not None:
        stmt = stmt.where(cond)
    return int(session.scalar(stmt) or 0)


def bucket_case(ts0: Any, now: float) -> Any:
    """SQL for age_bucket(now - ts0): the same boundaries, as `ts0 > now - limit` tests."""
    whens = [(ts0 > now - minutes * 60, index) for index, minutes in enumerate(BUCKET_MINUTES)]
    return case(*whens, else_=len(BUCKET_MINUTES))


def group_by(session: Session, where: Where, field: str, *, now: float) -> list[GroupRow]:
    """Queue entries grouped by `field`, with counts per age bucket; largest groups first."""
    column_name = GROUP_FIELDS.get(field)
    if column_name is None:
        raise InvalidInput(f"cannot group by '{field}' (one of {', '.join(sorted(GROUP_FIELDS))})")
    key = getattr(QueueEntry, column_name)
    bucket = bucket_case(QueueEntry.ts0, now).label("bucket")
    stmt = select(key, bucket, func.count()).group_by(key, bucket)
    cond = as_condition(where, False)
    if cond is not None:
        stmt = stmt.where(cond)
    groups: dict[str, list[int]] = {}
    for value, index, n in session.execute(stmt):
        groups.setdefault(value, [0] * BUCKETS)[index] += n
    rows = [GroupRow(k, sum(b), b) for k, b in groups.items()]
    rows.sort(key=lambda r: (-r.count, r.key))
    return rows
