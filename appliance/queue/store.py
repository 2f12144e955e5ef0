"""Queue entries in the store: enqueue, claim with a lease, and every outcome with its history row.

Functions take the session first and flush; the caller owns the transaction. Functions that may
leave a spool file unreferenced return its path, to be removed only after the commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

from sqlalchemy import (ColumnElement, CompoundSelect, Float, Integer, Table, and_, bindparam, exists,
                        func, insert, or_, select, union, update)
from sqlalchemy.orm import Session

from appliance.db.models import HistoryEntry, HistoryMetadata, QueueEntry, QueueMetadata
from appliance.db.models_bounce import BounceNotice
from appliance.db.models_trash import TrashEntry
from appliance.db.sets import bound_values, in_bound
from appliance.errors import InvalidInput, NotFound
from appliance.types import Action, NewMessage, QueueState, domain_of

# Columns a history row copies from its queue entry.
_SHARED = [c.key for c in HistoryEntry.__table__.columns if c.key not in ("id", "queueid", "transfertime")]


def enqueue(session: Session, msg: NewMessage, *, now: float) -> list[int]:
    """Insert one entry per recipient (and its metadata); return the queue ids in order."""
    if not msg.envelope.recipients:
        raise InvalidInput("a message needs at least one recipient")
    entries = [QueueEntry(**_entry_values(msg, rcpt, now)) for rcpt in msg.envelope.recipients]
    session.add_all(entries)
    session.flush()
    if msg.metadata:
        session.add_all(
            QueueMetadata(entry_id=e.id, key=k, value=v) for e in entries for k, v in msg.metadata.items()
        )
        session.flush()
    return [e.id for e in entries]


_QUEUE = cast(Table, QueueEntry.__table__)
_QUEUE_METADATA = cast(Table, QueueMetadata.__table__)
# One multi-row INSERT per call (SQLAlchemy's insertmanyvalues): RETURNING in no particular
# order, so each row says which (message, recipient) it was.
_INSERT_RETURNING = insert(_QUEUE).returning(_QUEUE.c.id, _QUEUE.c.msgid, _QUEUE.c.rcpt)
_INSERT_METADATA = insert(_QUEUE_METADATA)


def enqueue_batch(session: Session, messages: Sequence[NewMessage], *, now: float) -> list[list[int]]:
    """`enqueue` for many messages at once (a group commit's batch): one INSERT for all their
    entries and one for all their metadata, through SQLAlchemy Core rather than the ORM's
    unit of work. Returns each message's queue ids, in recipient order."""
    if len({msg.msgid for msg in messages}) != len(messages):
        # Rows are told apart by (msgid, rcpt): a repeated msgid goes one message at a time.
        return [enqueue(session, msg, now=now) for msg in messages]
    rows: list[dict[str, object]] = []
    for msg in messages:
        if not msg.envelope.recipients:
            raise InvalidInput("a message needs at least one recipient")
        rows.extend(_entry_values(msg, rcpt, now) for rcpt in msg.envelope.recipients)
    if not rows:
        return []
    conn = session.connection()
    ids_of: dict[tuple[str, str], list[int]] = {}
    for entry_id, msgid, rcpt in conn.execute(_INSERT_RETURNING, rows):
        ids_of.setdefault((msgid, rcpt), []).append(entry_id)
    for same in ids_of.values():  # a recipient given twice: ids in the order they were made
        same.sort(reverse=True)
    out = [[ids_of[(msg.msgid, rcpt)].pop() for rcpt in msg.envelope.recipients]
           for msg in messages]
    meta = [{"entry_id": entry_id, "key": k, "value": v}
            for msg, ids in zip(messages, out) if msg.metadata
            for entry_id in ids for k, v in msg.metadata.items()]
    if meta:
        conn.execute(_INSERT_METADATA, meta)
    return out


def enqueue_many(session: Session, messages: Sequence[NewMessage], *, now: float) -> None:
    """`enqueue` for many messages without metadata (DSNs of a bulk bounce) in one statement."""
    rows: list[dict[str, object]] = []
    for msg in messages:
        if not msg.envelope.recipients:
            raise InvalidInput("a message needs at least one recipient")
        if msg.metadata:
            raise InvalidInput("enqueue_many takes messages without metadata")
        rows.extend(_entry_values(msg, rcpt, now) for rcpt in msg.envelope.recipients)
    if rows:  # Core, not the ORM's bulk insert: nothing here needs an object back
        session.connection().execute(insert(_QUEUE), rows)


def _entry_values(msg: NewMessage, rcpt: str, now: float) -> dict[str, object]:
    return dict(
        msgid=msg.msgid, ts0=msg.received, ts=now, sender=msg.envelope.sender,
        sender_domain=domain_of(msg.envelope.sender), rcpt=rcpt, rcpt_domain=domain_of(rcpt),
        subject=msg.subject, size=msg.size, listener=msg.envelope.listener,
        transport=msg.transports.get(rcpt, msg.transport), fromserver=msg.envelope.client_ip,
        helo=msg.envelope.helo, sasl=msg.envelope.sasl, path=msg.path,
        state=msg.state.value, quarantine=msg.quarantine,
        # The policy's decision, as the old API marks a waiting entry (msgaction).
        action=(Action.QUARANTINE if msg.quarantine else Action.DELIVER).value,
        is_dsn=int(msg.is_dsn), description="", error="", retries=0, actionid=0, jobid="",
        score=0.0, next_retry=0.0, lease_until=0.0, lease_owner="",
    )


def get_entry(session: Session, entry_id: int, *, where: ColumnElement[bool] | None = None) -> QueueEntry:
    """One entry, or NotFound; `where` is the caller's access restriction."""
    stmt = select(QueueEntry).where(QueueEntry.id == entry_id)
    if where is not None:
        stmt = stmt.where(where)
    entry = session.scalars(stmt).one_or_none()
    if entry is None:
        raise NotFound(f"no queue entry {entry_id}")
    return entry


def due_condition(now: float | ColumnElement[float]) -> ColumnElement[bool]:
    """Entries a worker may take now: ACTIVE or DEFER whose retry time has come (an ACTIVE
    entry has none, unless a suspension that held it spread its release); not leased."""
    return and_(
        QueueEntry.state.in_([QueueState.ACTIVE.value, QueueState.DEFER.value]),
        QueueEntry.next_retry <= now,
        QueueEntry.lease_until < now,
    )


def claim(
    session: Session, *, owner: str, now: float, lease: float, limit: int,
    transport: str | None = None, exclude: ColumnElement[bool] | None = None,
) -> list[QueueEntry]:
    """Lease up to `limit` due entries to `owner` until `now + lease`, oldest first; never
    entries matching `exclude`'s negation (what active suspensions hold)."""
    stmt = _DUE
    if transport is not None:
        stmt = stmt.where(QueueEntry.transport == transport)
    if exclude is not None:
        stmt = stmt.where(exclude)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    conn = session.connection()
    ids = list(conn.execute(stmt, {"now": now, "limit": limit}).scalars())
    if not ids:
        return []
    until = now + lease
    # Conditional on the lease still being free, so two claimers never share an entry.
    conn.execute(_LEASE, {"ids": ids, "now": now, "until": until, "owner": owner})
    return list(session.scalars(_LEASED, {"ids": ids, "owner": owner, "until": until}))


# The claim's statements, built once (delivery claims many times a second): the due entries'
# ids, the lease on those still free, and the entries leased.
_DUE = (select(QueueEntry.id).where(due_condition(bindparam("now", type_=Float)))
        .order_by(QueueEntry.id).limit(bindparam("limit", type_=Integer)))
_LEASE = (update(_QUEUE)
          .where(_QUEUE.c.id.in_(bindparam("ids", expanding=True)),
                 _QUEUE.c.lease_until < bindparam("now"))
          .values(lease_until=bindparam("until"), lease_owner=bindparam("owner"),
                  state=QueueState.ACTIVE.value))
_LEASED = (select(QueueEntry)
           .where(QueueEntry.id.in_(bindparam("ids", expanding=True)),
                  QueueEntry.lease_owner == bindparam("owner"),
                  QueueEntry.lease_until == bindparam("until"))
           .order_by(QueueEntry.id)
           # The lease went in on the connection: entries this session holds already take it.
           .execution_options(populate_existing=True))


def release_all_leases(session: Session) -> int:
    """At start: entries leased by a process that died go back to being due."""
    result = session.execute(
        update(QueueEntry).where(QueueEntry.lease_until > 0).values(lease_until=0.0, lease_owner="")
    )
    return _rowcount(result) or 0


def _leased(session: Session, entry_id: int, owner: str | None) -> QueueEntry | None:
    """The entry if it still exists (and, with `owner`, is still leased to it)."""
    entry = session.get(QueueEntry, entry_id, with_for_update=session.get_bind().dialect.name == "postgresql")
    if entry is None or (owner is not None and entry.lease_owner != owner):
        return None
    return entry


def write_history(
    session: Session, entry: QueueEntry, action: Action, *, now: float, error: str | None = None,
    transfertime: float = 0.0, description: str | None = None,
) -> HistoryEntry:
    row = HistoryEntry(**{k: getattr(entry, k) for k in _SHARED})
    row.queueid = entry.id
    row.action = action.value
    row.ts = now
    row.transfertime = transfertime
    if error is not None:
        row.error = error
    if description is not None:
        row.description = description
    session.add(row)
    session.flush()
    meta = session.execute(
        select(QueueMetadata.key, QueueMetadata.value).where(QueueMetadata.entry_id == entry.id)
    ).all()
    if meta:
        session.add_all(HistoryMetadata(entry_id=row.id, key=k, value=v) for k, v in meta)
    return row


def finish(
    session: Session, entry: QueueEntry, action: Action, *, now: float, error: str | None = None,
    transfertime: float = 0.0,
) -> str | None:
    """Write the final history row and remove the entry; return the spool path if now unused."""
    write_history(session, entry, action, now=now, error=error, transfertime=transfertime)
    session.delete(entry)
    session.flush()
    return unreferenced_path(session, entry.path)


def unreferenced_path(session: Session, path: str) -> str | None:
    """`path` if no queue entry and no trashed entry refers to it any more, else None."""
    if not path:
        return None
    return None if paths_in_use(session, {path}) else path


def paths_in_use(session: Session, paths: Iterable[str]) -> set[str]:
    """Those of `paths` a queue entry, an entry in the trash (which keeps its body for a
    restore) or a bounce notice (whose DSN quotes the body's headers) still refers to."""
    wanted = sorted(set(paths) - {""})
    if not wanted:
        return set()
    dialect = session.get_bind().dialect.name
    stmt = _PATHS_IN_USE.get(dialect)
    if stmt is None:  # one statement over the three tables, whatever the number of paths
        stmt = _PATHS_IN_USE[dialect] = union(*(
            select(model.path).where(in_bound(dialect, model.path, "paths", strings=True))
            for model in (QueueEntry, TrashEntry, BounceNotice)))
    return set(session.connection().execute(
        stmt, {"paths": bound_values(dialect, wanted)}).scalars())


# Built once per backend: delivery asks after every batch it records.
_PATHS_IN_USE: dict[str, CompoundSelect] = {}


def record_delivered(
    session: Session, entry_id: int, *, owner: str | None, now: float, transfertime: float,
    response: str = "",
) -> str | None:
    entry = _leased(session, entry_id, owner)
    if entry is None:
        return None
    return finish(session, entry, Action.DELIVER, now=now, error=response, transfertime=transfertime)


def record_deferred(
    session: Session, entry_id: int, *, owner: str | None, now: float, error: str, next_retry: float,
) -> None:
    """A temporary failure: DEFER until `next_retry`, one more retry counted, a DEFER history row."""
    entry = _leased(session, entry_id, owner)
    if entry is None:
        return
    held = entry.state == QueueState.HOLD.value
    entry.retries += 1
    entry.error = error
    entry.ts = now
    entry.next_retry = next_retry
    entry.lease_until = 0.0
    entry.lease_owner = ""
    if not held:  # an operator's hold during the attempt wins
        entry.state = QueueState.DEFER.value
    session.flush()
    write_history(session, entry, Action.DEFER, now=now)


def release(session: Session, entry_id: int, *, owner: str) -> None:
    """Give a claimed entry back unchanged (e.g. at shutdown)."""
    session.execute(
        update(QueueEntry)
        .where(QueueEntry.id == entry_id, QueueEntry.lease_owner == owner)
        .values(lease_until=0.0, lease_owner="")
    )


def hold(session: Session, entry_id: int, *, now: float, where: ColumnElement[bool] | None = None) -> None:
    entry = get_entry(session, entry_id, where=where)
    entry.state = QueueState.HOLD.value
    entry.ts = now
    session.flush()


def retry(
    session: Session, entry_id: int, *, now: float, duplicate: bool = False,
    where: ColumnElement[bool] | None = None,
) -> int:
    """Make an entry due now; with `duplicate`, queue a copy and keep the original. Returns the id acted on."""
    entry = get_entry(session, entry_id, where=where)
    if not duplicate:
        entry.state = QueueState.ACTIVE.value
        entry.next_retry = 0.0
        entry.ts = now
        session.flush()
        return entry.id
    copy = QueueEntry(**{k: getattr(entry, k) for k in _SHARED})
    copy.state = QueueState.ACTIVE.value
    copy.ts = now
    copy.next_retry = 0.0
    copy.lease_until = 0.0
    copy.lease_owner = ""
    copy.retries = 0
    session.add(copy)
    session.flush()
    meta = session.execute(
        select(QueueMetadata.key, QueueMetadata.value).where(QueueMetadata.entry_id == entry.id)
    ).all()
    session.add_all(QueueMetadata(entry_id=copy.id, key=k, value=v) for k, v in meta)
    session.flush()
    return copy.id


def delete(
    session: Session, entry_id: int, *, now: float, where: ColumnElement[bool] | None = None,
) -> str | None:
    """Remove an entry silently (a DELETE history row); return the spool path if now unused."""
    entry = get_entry(session, entry_id, where=where)
    return finish(session, entry, Action.DELETE, now=now)


def set_metadata(
    session: Session, entry_id: int, key: str, value: str, *, where: ColumnElement[bool] | None = None,
) -> None:
    if not key or len(key) > 128:
        raise InvalidInput("metadata key must be 1 to 128 characters")
    entry = get_entry(session, entry_id, where=where)
    row = session.get(QueueMetadata, (entry.id, key))
    if row is None:
        session.add(QueueMetadata(entry_id=entry.id, key=key, value=value))
    else:
        row.value = value
    session.flush()


# The metadata of some entries (delivery reads it per batch): built once, run on the connection.
_METADATA_OF = {history: select(model.entry_id, model.key, model.value)
                .where(model.entry_id.in_(bindparam("ids", expanding=True)))
                for history, model in ((False, QueueMetadata), (True, HistoryMetadata))}


def metadata_of(session: Session, entry_ids: Iterable[int], *, history: bool = False) -> dict[int, dict[str, str]]:
    model = HistoryMetadata if history else QueueMetadata
    out: dict[int, dict[str, str]] = {}
    ids = list(entry_ids)
    if not ids:
        return out
    for entry_id, key, value in session.connection().execute(_METADATA_OF[history], {"ids": ids}):
        out.setdefault(entry_id, {})[key] = value
    return out


def referenced_paths(session: Session) -> set[str]:
    """Spool paths the queue or the trash refers to."""
    return (set(session.scalars(select(QueueEntry.path).distinct()))
            | set(session.scalars(select(TrashEntry.path).distinct())))


def counts_by_state(session: Session, *, where: ColumnElement[bool] | None = None
                    ) -> dict[str, int]:
    """Queue entries per state (only those matching `where`, e.g. a user's restriction)."""
    stmt = select(QueueEntry.state, func.count()).group_by(QueueEntry.state)
    rows = session.execute(stmt if where is None else stmt.where(where)).all()
    counts = {s.value: 0 for s in QueueState}
    counts.update({state: n for state, n in rows})
    return counts


def _rowcount(result: object) -> int:
    """Rows an UPDATE/DELETE touched (execute() is typed as Result; DML gives a CursorResult)."""
    return int(getattr(result, "rowcount", 0) or 0)


def message_metadata(session: Session, msgids: Iterable[str], key: str) -> dict[str, str]:
    """`key`'s value per message (any of its queue entries holding it)."""
    ids = list(msgids)
    if not ids:
        return {}
    rows = session.execute(
        select(QueueEntry.msgid, QueueMetadata.value)
        .join(QueueMetadata, QueueMetadata.entry_id == QueueEntry.id)
        .where(QueueEntry.msgid.in_(ids), QueueMetadata.key == key)
    )
    return {msgid: value for msgid, value in rows}


def set_message_metadata(session: Session, values: dict[str, str], key: str) -> None:
    """Set `key` on every queue entry of each message (msgid -> value) that lacks it."""
    if not values:
        return
    # Looked up per candidate entry (primary key entry_id, key), not as the set of every entry
    # holding `key`, which grows with the queue.
    has = exists().where(QueueMetadata.entry_id == QueueEntry.id, QueueMetadata.key == key)
    rows = session.execute(
        select(QueueEntry.id, QueueEntry.msgid).where(QueueEntry.msgid.in_(list(values)), ~has)
    ).all()
    if rows:
        session.execute(insert(QueueMetadata),
                        [{"entry_id": i, "key": key, "value": values[m]} for i, m in rows])
