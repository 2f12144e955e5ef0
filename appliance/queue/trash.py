"""The trash: deleted queue entries kept whole for a grace period, then restored or purged.

A delete moves an entry here (queue.bulk.to_trash) in the transaction that removes it from the
queue; a restore moves it back the same way (same id, state, retries, metadata, body path), so
a crash at any point leaves each entry in exactly one of the two. Restores and purges run in
chunks, each selected in a read transaction and acted on in a write transaction of its own
(as bulk queue actions do); spool bodies a purge leaves unused are removed after its commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from sqlalchemy import ColumnElement, delete, func, insert, literal, select
from sqlalchemy.orm import Session

from appliance import crashpoint
from appliance.db.engine import Store
from appliance.db.models import QueueEntry, QueueMetadata
from appliance.db.models_trash import TrashEntry, TrashMetadata
from appliance.db.sets import in_values
from appliance.errors import InvalidInput
from appliance.queue import store as queue_store
from appliance.queue.bulk import (DEFAULT_CHUNK, MAX_CHUNK, page_cache, to_trash,
                                  write_history_many)
from appliance.types import Action

log = logging.getLogger(__name__)

MAX_LIMIT = 10_000
# Columns a restored queue entry takes back from its trash row (the lease starts free).
_RESTORED = [c.key for c in QueueEntry.__table__.columns if c.key not in ("lease_until", "lease_owner")]


def search(session: Session, where: ColumnElement[bool] | None, *, offset: int, limit: int,
           with_total: bool = False) -> tuple[list[TrashEntry], int | None]:
    """One page of trashed entries, most recently deleted first (then highest id)."""
    if offset < 0 or not 0 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"offset must be 0 or more and limit 0 to {MAX_LIMIT}")
    stmt = (select(TrashEntry).order_by(TrashEntry.deleted.desc(), TrashEntry.id.desc())
            .offset(offset).limit(limit))
    if where is not None:
        stmt = stmt.where(where)
    rows = list(session.scalars(stmt)) if limit else []
    return rows, count(session, where) if with_total else None


def count(session: Session, where: ColumnElement[bool] | None) -> int:
    stmt = select(func.count()).select_from(TrashEntry)
    return int(session.scalar(stmt if where is None else stmt.where(where)) or 0)


def first(session: Session, where: ColumnElement[bool] | None, *, limit: int) -> list[TrashEntry]:
    """The first `limit` matching entries in the order a restore or purge takes them (id)."""
    stmt = select(TrashEntry).order_by(TrashEntry.id).limit(limit)
    return list(session.scalars(stmt if where is None else stmt.where(where)))


def metadata_of(session: Session, ids: list[int]) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {}
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        for entry_id, key, value in session.execute(
                select(TrashMetadata.entry_id, TrashMetadata.key, TrashMetadata.value)
                .where(TrashMetadata.entry_id.in_(part))):
            out.setdefault(entry_id, {})[key] = value
    return out


def expired_condition(*, now: float, hours: float) -> ColumnElement[bool]:
    """Trashed entries whose grace period has run out (pure: the SQL condition only)."""
    return TrashEntry.deleted <= now - hours * 3600.0


def restore(store: Store, where: ColumnElement[bool] | None, *, now: float,
            chunk: int = DEFAULT_CHUNK, in_chunk: Callable[[Session, int], None] | None = None,
            after_chunk: Callable[[int], None] | None = None) -> int:
    """Put every matching trashed entry back in the queue exactly as it was deleted, with a
    RESTORE history row each; returns how many."""
    return _chunked(store, where, _restore_chunk, now=now, chunk=chunk, in_chunk=in_chunk,
                    after_chunk=after_chunk, on_paths=None, what="restore")


def purge(store: Store, where: ColumnElement[bool] | None, *, now: float,
          chunk: int = DEFAULT_CHUNK, in_chunk: Callable[[Session, int], None] | None = None,
          on_paths: Callable[[list[str]], None] | None = None) -> int:
    """Remove matching trashed entries for good; bodies no entry uses any more go to
    `on_paths` after each chunk's commit. Returns how many."""
    return _chunked(store, where, _purge_chunk, now=now, chunk=chunk, in_chunk=in_chunk,
                    after_chunk=None, on_paths=on_paths, what="purge")


def _chunked(store: Store, where: ColumnElement[bool] | None,
             act: Callable[[Session, list[int], float], tuple[int, list[str]]], *, now: float,
             chunk: int, in_chunk: Callable[[Session, int], None] | None,
             after_chunk: Callable[[int], None] | None,
             on_paths: Callable[[list[str]], None] | None, what: str) -> int:
    if not isinstance(chunk, int) or not 1 <= chunk <= MAX_CHUNK:
        raise InvalidInput(f"chunk must be 1 to {MAX_CHUNK}")
    done, after = 0, 0
    while True:
        try:
            with store.transaction(read_only=True) as session:
                stmt = (select(TrashEntry.id).where(TrashEntry.id > after)
                        .order_by(TrashEntry.id).limit(chunk))
                ids = list(session.scalars(stmt if where is None else stmt.where(where)))
            if not ids:
                break
            with store.transaction() as session, page_cache(session):
                # Re-checked under the write lock: another call may have taken some meanwhile.
                cond = [in_values(session, TrashEntry.id, ids)] + ([where] if where is not None else [])
                locked = list(session.scalars(
                    select(TrashEntry.id).where(*cond).order_by(TrashEntry.id).with_for_update()))
                acted, paths = act(session, locked, now) if locked else (0, [])
                if in_chunk is not None:
                    in_chunk(session, acted)
                crashpoint.reached(f"trash.{what}.acted")  # moved, not committed
        except Exception as exc:
            exc.bulk_done = done  # type: ignore[attr-defined]
            exc.add_note(f"trash {what}: {done} entries were handled before this failure")
            raise
        done += acted
        after = ids[-1]
        crashpoint.reached(f"trash.{what}.committed")
        if paths and on_paths is not None:
            on_paths(paths)
        if acted and after_chunk is not None:
            after_chunk(acted)
    if done:
        log.info("trash %s: %d entries", what, done)
    return done


def _restore_chunk(session: Session, ids: list[int], now: float) -> tuple[int, list[str]]:
    chosen = in_values(session, TrashEntry.id, ids)
    # An id still (or again) in the queue cannot be restored over: skipped, it stays trashed.
    busy = set(session.scalars(select(QueueEntry.id).where(in_values(session, QueueEntry.id, ids))))
    if busy:
        log.error("trash restore: queue ids %s exist already; left in the trash", sorted(busy)[:10])
        ids = [i for i in ids if i not in busy]
        if not ids:
            return 0, []
        chosen = in_values(session, TrashEntry.id, ids)
    source = select(*[getattr(TrashEntry, c) for c in _RESTORED], literal(0.0), literal(""))
    session.execute(insert(QueueEntry).from_select([*_RESTORED, "lease_until", "lease_owner"],
                                                   source.where(chosen)))
    meta = select(TrashMetadata.entry_id, TrashMetadata.key, TrashMetadata.value).where(
        in_values(session, TrashMetadata.entry_id, ids))
    session.execute(insert(QueueMetadata).from_select(["entry_id", "key", "value"], meta))
    write_history_many(session, ids, Action.RESTORE, now=now)
    # trash_metadata rows go with their entry (ON DELETE CASCADE).
    session.execute(delete(TrashEntry).where(chosen).execution_options(synchronize_session=False))
    return len(ids), []


def _purge_chunk(session: Session, ids: list[int], now: float) -> tuple[int, list[str]]:
    chosen = in_values(session, TrashEntry.id, ids)
    paths = set(session.scalars(select(TrashEntry.path).where(chosen).distinct())) - {""}
    session.execute(delete(TrashEntry).where(chosen).execution_options(synchronize_session=False))
    return len(ids), sorted(paths - queue_store.paths_in_use(session, paths))



def delete_one(session: Session, entry_id: int, *, now: float, by: str,
               where: ColumnElement[bool] | None = None) -> list[str]:
    """Delete one queue entry (found inside `where`) into the trash; NotFound if there is none."""
    entry = queue_store.get_entry(session, entry_id, where=where)
    session.expunge(entry)
    return to_trash(session, [entry_id], now=now, by=by)
