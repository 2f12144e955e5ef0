"""Turning attempt results into queue outcomes, and recording them in one transaction."""

from __future__ import annotations

import dataclasses
import enum

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.bounce.handling import BounceItem, bounce_entries
from appliance.config.schema import QueueSection
from appliance.db.models import QueueEntry
from appliance.delivery.replies import Kind, Reply, dsn_status
from appliance.delivery.retry import expired, retry_at
from appliance.queue import store as q
from appliance.queue.spool import Spool
from appliance.types import Action


class Fate(str, enum.Enum):
    DELIVER = "DELIVER"
    DEFER = "DEFER"
    BOUNCE = "BOUNCE"
    DELETE = "DELETE"
    ERROR = "ERROR"


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


def decide(
    entry: QueueEntry, reply: Reply, *, queue: QueueSection, now: float, peer: str = "",
    transfertime: float = 0.0,
) -> Outcome:
    """2xx delivered; 5xx bounces; anything else is retried until the queue lifetime ends."""
    common = dict(entry=entry, reply=reply, peer=peer, transfertime=transfertime)
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
    orphans: list[str] = []
    written: list[Outcome] = []
    bounces: list[BounceItem] = []
    ids = [out.entry.id for out in outcomes]
    for i in range(0, len(ids), 500):  # load into the identity map in a few queries
        session.scalars(select(QueueEntry).where(QueueEntry.id.in_(ids[i:i + 500]))).all()
    for out in outcomes:
        entry = session.get(QueueEntry, out.entry.id)
        if entry is None or entry.lease_owner != owner:
            continue  # deleted or bounced meanwhile, or the lease expired and was taken over
        written.append(out)
        if out.fate is Fate.DELIVER:
            path = q.record_delivered(session, entry.id, owner=owner, now=now,
                                      transfertime=out.transfertime, response=out.reason)
        elif out.fate is Fate.DEFER:
            q.record_deferred(session, entry.id, owner=owner, now=now, error=out.reason,
                              next_retry=out.next_retry)
            path = None
        elif out.fate is Fate.BOUNCE:
            bounces.append(BounceItem(entry=entry, reason=out.reason, status=out.status or None,
                                      remote_mta=out.peer.partition("[")[0]))
            path = None
        else:
            action = Action.DELETE if out.fate is Fate.DELETE else Action.ERROR
            path = q.finish(session, entry, action, now=now, error=out.reason)
        if path:
            orphans.append(path)
    if bounces:
        orphans.extend(bounce_entries(session, spool, bounces, now=now, hostname=hostname))
    return written, sorted(set(orphans))
