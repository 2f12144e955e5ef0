"""Bulk queue actions over an HQL condition: streamed in bounded chunks, one transaction each."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.errors import InvalidInput, NotFound
from appliance.queue import store as queue_store
from appliance.queue.query import Where, as_condition

log = logging.getLogger(__name__)

ACTIONS = ("retry", "hold", "delete", "bounce")
MAX_CHUNK = 10000


class Bouncer(Protocol):
    """Bounces one entry inside the caller's transaction; returns a spool path it orphaned."""

    def __call__(self, session: Session, entry: QueueEntry) -> str | None: ...


def act_on_matching(
    store: Store, where: Where, action: str, *, now: float, duplicate: bool = False,
    chunk: int = 500, bounce: Bouncer | None = None,
    on_paths: Callable[[list[str]], None] | None = None,
) -> int:
    """Apply `action` (retry, hold, delete, bounce) to every queue entry matching `where`.

    Matching ids are read in chunks of `chunk` in id order, each chunk acted on and committed in
    its own transaction, so memory stays flat and an entry is either fully handled or untouched.
    Entries that match only after the call starts (including retry copies) are not included;
    an entry that vanished or stopped matching meanwhile is skipped. Spool paths the chunk left
    unreferenced go to `on_paths` after its commit. Returns how many entries were acted on; if a
    chunk fails, the exception propagates with `.bulk_done` set to the entries already committed.
    """
    _check(action, chunk, bounce)
    cond = as_condition(where, False)
    with store.transaction(read_only=True) as session:
        ceiling = session.scalar(select(func.max(QueueEntry.id)))
    done, after = 0, 0
    while ceiling is not None:
        try:
            with store.transaction() as session:
                ids = _next_ids(session, cond, after=after, ceiling=ceiling, limit=chunk)
                if not ids:
                    break
                acted, paths = _act_on_chunk(session, ids, cond, action, now=now,
                                             duplicate=duplicate, bounce=bounce)
        except Exception as exc:
            exc.bulk_done = done  # type: ignore[attr-defined]
            exc.add_note(f"bulk {action}: {done} entries were handled before this failure")
            log.warning("bulk %s stopped after %d entries: %s", action, done, exc)
            raise
        done += acted
        after = ids[-1]
        if paths and on_paths is not None:
            on_paths(paths)
    log.info("bulk %s acted on %d entries", action, done)
    return done


def _check(action: str, chunk: int, bounce: Bouncer | None) -> None:
    if action not in ACTIONS:
        raise InvalidInput(f"unknown bulk action '{action}' (one of {', '.join(ACTIONS)})")
    if not isinstance(chunk, int) or not 1 <= chunk <= MAX_CHUNK:
        raise InvalidInput(f"chunk must be 1 to {MAX_CHUNK}")
    if action == "bounce" and bounce is None:
        raise InvalidInput("bulk bounce needs a bounce function")


def _next_ids(
    session: Session, cond: ColumnElement[bool] | None, *, after: int, ceiling: int, limit: int
) -> list[int]:
    stmt = (
        select(QueueEntry.id)
        .where(QueueEntry.id > after, QueueEntry.id <= ceiling)
        .order_by(QueueEntry.id)
        .limit(limit)
    )
    if cond is not None:
        stmt = stmt.where(cond)
    return list(session.scalars(stmt))


def _act_on_chunk(
    session: Session, ids: list[int], cond: ColumnElement[bool] | None, action: str, *,
    now: float, duplicate: bool, bounce: Bouncer | None,
) -> tuple[int, list[str]]:
    """Act on each id (re-checked against `cond`, as another writer may have changed it)."""
    acted = 0
    paths: list[str] = []
    for entry_id in ids:
        try:
            path = _act_on_one(session, entry_id, cond, action, now=now, duplicate=duplicate,
                               bounce=bounce)
        except NotFound:
            continue
        acted += 1
        if path:
            paths.append(path)
    return acted, sorted(set(paths))


def _act_on_one(
    session: Session, entry_id: int, cond: ColumnElement[bool] | None, action: str, *,
    now: float, duplicate: bool, bounce: Bouncer | None,
) -> str | None:
    if action == "hold":
        queue_store.hold(session, entry_id, now=now, where=cond)
        return None
    if action == "retry":
        queue_store.retry(session, entry_id, now=now, duplicate=duplicate, where=cond)
        return None
    if action == "delete":
        return queue_store.delete(session, entry_id, now=now, where=cond)
    entry: Any = queue_store.get_entry(session, entry_id, where=cond)
    assert bounce is not None  # checked by _check
    return bounce(session, entry)
