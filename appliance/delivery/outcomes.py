"""Turning attempt results into queue outcomes, and recording them in one transaction."""

from __future__ import annotations

import dataclasses
import enum

from collections.abc import Iterator
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select
from sqlalchemy.orm import Session

from appliance.bounce.handling import BounceItem, bounce_entries
from appliance.config.schema import QueueSection
from appliance.db.models import HistoryEntry, HistoryMetadata, QueueEntry
from appliance.replies import Kind, Reply, dsn_status
from appliance.delivery.retry import expired, retry_at
from appliance.queue import events
from appliance.queue import store as q
from appliance.queue.bulk import to_trash
from appliance.queue.spool import Spool
from appliance.types import Action, QueueState


# Columns a history row copies from its queue entry (as appliance.queue.store does).
_SHARED = [c.key for c in HistoryEntry.__table__.columns if c.key not in ("id", "queueid", "transfertime")]
# Who deleted an entry that a policy script's verdict deleted (the trash's `deletedby`).
POLICY_DELETER = "policy"


class Fate(str, enum.Enum):
    DELIVER = "DELIVER"
    DEFER = "DEFER"
    BOUNCE = "BOUNCE"
    DELETE = "DELETE"
    ERROR = "ERROR"
    QUARANTINE = "QUARANTINE"  # a policy held it: HOLD, kept with its body, not attempted


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outcome:
    """The decided fate of one claimed entry after one attempt."""

    entry: QueueEntry  # as claimed (detached)
    fate: Fate
    reply: Reply
    peer: str = ""
    transfertime: float = 0.0
    next_retry: float = 0.0
    status: str = ""  # DSN status for bounces
    reason: str = ""  # msgerror / history error text
    quarantine: str = ""  # the quarantine name for Fate.QUARANTINE
    script: str = ""  # the pre-delivery script that decided this fate, if one did
    rates: tuple[str, ...] = ()  # rate() buckets that script found over their limit
    started: float = dataclasses.field(default=0.0, compare=False)  # the attempt's start (wall clock)


def decide(
    entry: QueueEntry, reply: Reply, *, queue: QueueSection, now: float, peer: str = "",
    transfertime: float = 0.0, started: float = 0.0,
) -> Outcome:
    """2xx delivered; 5xx bounces; anything else is retried until the queue lifetime ends."""
    common = dict(entry=entry, reply=reply, peer=peer, transfertime=transfertime, started=started)
    kind = reply.kind
    if kind is Kind.SUCCESS:
        return Outcome(fate=Fate.DELIVER, reason=str(reply), **common)  # type: ignore[arg-type]
    if kind is Kind.PERMANENT:
        return Outcome(fate=Fate.BOUNCE, status=dsn_status(reply), reason=str(reply), **common)  # type: ignore[arg-type]
    if expired(entry.ts0, queue.lifetime, now):
        reason = f"{reply} (gave up: queue lifetime of {queue.lifetime}s expired)"
        return Outcome(fate=Fate.BOUNCE, status=dsn_status(reply, expired=True), reason=reason, **common)  # type: ignore[arg-type]
    at = retry_at(entry.retries, queue.retry_schedule, now, received=entry.ts0, lifetime=queue.lifetime)
    return Outcome(fate=Fate.DEFER, next_retry=at, reason=str(reply), **common)  # type: ignore[arg-type]


def record(
    session: Session, spool: Spool, outcomes: list[Outcome], *, owner: str, now: float, hostname: str,
) -> tuple[list[Outcome], list[str]]:
    """Write every outcome whose lease this owner still holds. Returns the outcomes written and
    the spool paths left unreferenced (remove them after the commit)."""
    entries = _owned(session, [out.entry.id for out in outcomes], owner)
    written = [out for out in outcomes if out.entry.id in entries]
    removed: set[str] = set()
    delivered = [out for out in written if out.fate is Fate.DELIVER]
    if delivered:
        _delivered(session, [entries[out.entry.id] for out in delivered], delivered, now=now)
    bounces: list[BounceItem] = []
    for out in written:
        entry = entries[out.entry.id]
        if out.fate not in (Fate.DEFER, Fate.QUARANTINE):
            removed.add(entry.path)
        if out.fate is Fate.QUARANTINE:
            _quarantine(session, entry, out, now=now)
        elif out.fate is Fate.DEFER:
            q.record_deferred(session, entry.id, owner=owner, now=now, error=out.reason,
                              next_retry=out.next_retry)
        elif out.fate is Fate.BOUNCE:
            bounces.append(BounceItem(entry=entry, reason=out.reason, status=out.status or None,
                                      remote_mta=out.peer.partition("[")[0]))
        elif out.fate is Fate.DELETE:
            # A script's delete goes to the trash like an operator's (undo within the grace period).
            entry.error = out.reason
            session.flush()
            to_trash(session, [entry.id], now=now, by=POLICY_DELETER)
            session.expunge(entry)
        elif out.fate is Fate.ERROR:
            q.finish(session, entry, Action.ERROR, now=now, error=out.reason)
    if bounces:
        bounce_entries(session, spool, bounces, now=now, hostname=hostname)
    events.add(session, [e for out in written for e in timeline_events(out, entries[out.entry.id], now)])
    return written, _unreferenced(session, removed)


_FATE_KIND = {
    Fate.DELIVER: "delivered", Fate.DEFER: "deferred", Fate.BOUNCE: "bounced",
    Fate.DELETE: "deleted", Fate.ERROR: "error", Fate.QUARANTINE: "quarantined",
}


def timeline_events(out: Outcome, entry: QueueEntry, now: float) -> list[events.Event]:
    """The attempt (when there was one) and the fate of one entry, for its timeline."""
    e = out.entry
    made: list[events.Event] = []
    if out.script:
        made.append(events.Event(msgid=e.msgid, queueid=e.id, kind="policy", ts=now, detail={
            k: v for k, v in {"script": out.script, "stage": "pre_delivery",
                              "decision": out.fate.value.lower(), "reason": str(out.reply),
                              "rates": ", ".join(out.rates)}.items() if v}))
    elif out.peer or out.reply.code or out.fate in (Fate.DEFER, Fate.BOUNCE):
        # Stamped when it began: a next hop of this product receives the message meanwhile.
        began = out.started if 0 < out.started <= now else now
        made.append(events.Event(msgid=e.msgid, queueid=e.id, kind="attempt", ts=began, detail={
            "peer": out.peer, "reply": str(out.reply), "rcpt": e.rcpt, "transport": e.transport,
            "seconds": f"{out.transfertime:.3f}"}))
    detail = {"rcpt": e.rcpt, "reply": str(out.reply), "peer": out.peer}
    if out.fate is Fate.DEFER:
        detail.update(next_retry=f"{out.next_retry:.0f}", retries=str(e.retries + 1))
        if out.rates:
            detail["rates"] = ", ".join(out.rates)
            detail["script"] = out.script
    elif out.fate is Fate.BOUNCE:
        detail.update(status=out.status, reason=out.reason)
    elif out.fate is Fate.QUARANTINE:
        detail.update(quarantine=out.quarantine, reason=out.reason)
    elif out.fate in (Fate.DELETE, Fate.ERROR):
        detail["reason"] = out.reason
    made.append(events.Event(msgid=e.msgid, queueid=e.id, kind=_FATE_KIND[out.fate], ts=now,
                             detail={k: v for k, v in detail.items() if v}))
    return made


def _quarantine(session: Session, entry: QueueEntry, out: Outcome, *, now: float) -> None:
    """HOLD with action QUARANTINE and the name (as a quarantine at reception), lease given
    back, and a QUARANTINE history row; an operator releases it with retry."""
    entry.state = QueueState.HOLD.value
    entry.action = Action.QUARANTINE.value
    entry.quarantine = out.quarantine or "quarantine"
    entry.ts = now
    entry.lease_until = 0.0
    entry.lease_owner = ""
    session.flush()
    q.write_history(session, entry, Action.QUARANTINE, now=now, error=out.reason)


def _chunks(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _owned(session: Session, ids: list[int], owner: str) -> dict[int, QueueEntry]:
    """The entries still leased to `owner` (not deleted, bounced or taken over meanwhile)."""
    out: dict[int, QueueEntry] = {}
    stmt = _OWNED_FOR_UPDATE if session.get_bind().dialect.name == "postgresql" else _OWNED
    for chunk in _chunks(ids):
        out.update((e.id, e) for e in session.scalars(stmt, {"ids": chunk, "owner": owner}))
    return out


_OWNED = select(QueueEntry).where(QueueEntry.id.in_(bindparam("ids", expanding=True)),
                                  QueueEntry.lease_owner == bindparam("owner"))
_OWNED_FOR_UPDATE = _OWNED.with_for_update()


def _delivered(session: Session, entries: list[QueueEntry], outs: list[Outcome], *, now: float) -> None:
    """DELIVER history rows and removal for many entries in a few statements: the hot path.

    Same rows as appliance.queue.store.record_delivered writes one by one, whose ORM cost per
    entry (several ms) would cap delivery at a few hundred messages per second.
    """
    rows = []
    for entry, out in zip(entries, outs):
        row = {k: getattr(entry, k) for k in _SHARED}
        row.update(queueid=entry.id, action=Action.DELIVER.value, ts=now,
                   transfertime=out.transfertime, error=out.reason)
        rows.append(row)
    ids = [e.id for e in entries]
    conn = session.connection()  # tables, not ORM entities: statements built once (below)
    meta = [(eid, k, v) for chunk in _chunks(ids)
            for eid, fields in q.metadata_of(session, chunk).items() for k, v in fields.items()]
    if meta:
        history_id = {queueid: hid for hid, queueid in conn.execute(_INSERT_HISTORY_RETURNING, rows)}
        conn.execute(_INSERT_HISTORY_METADATA, [
            {"entry_id": history_id[eid], "key": k, "value": v} for eid, k, v in meta])
    else:
        conn.execute(_INSERT_HISTORY, rows)
    for chunk in _chunks(ids):  # metadata rows go with them (ON DELETE CASCADE)
        conn.execute(_DELETE_ENTRIES, {"ids": chunk})
    for entry in entries:
        session.expunge(entry)


_HISTORY = cast(Table, HistoryEntry.__table__)
_INSERT_HISTORY = insert(_HISTORY)
_INSERT_HISTORY_RETURNING = insert(_HISTORY).returning(
    _HISTORY.c.id, _HISTORY.c.queueid, sort_by_parameter_order=True)
_INSERT_HISTORY_METADATA = insert(cast(Table, HistoryMetadata.__table__))
_DELETE_ENTRIES = delete(cast(Table, QueueEntry.__table__)).where(
    QueueEntry.__table__.c.id.in_(bindparam("ids", expanding=True)))


def _unreferenced(session: Session, paths: set[str]) -> list[str]:
    candidates = sorted(p for p in paths if p)
    still = q.paths_in_use(session, candidates)
    return [p for p in candidates if p not in still]
