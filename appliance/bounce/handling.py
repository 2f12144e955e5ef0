"""Bouncing queue entries: a DSN queued to the sender, a BOUNCE history row, the entry removed."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from appliance.bounce.dsn import FailedRecipient, build_dsn, subject_line
from appliance.db.models import QueueEntry
from appliance.replies import enhanced_status
from appliance.errors import NotFound
from appliance.queue import store as q
from appliance.queue.bulk import finish_many
from appliance.queue.spool import Spool
from appliance.types import Action, Envelope, NewMessage

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BounceItem:
    """One entry to bounce and why; `status` defaults to the reason's 5.x.x code or 5.0.0."""

    entry: QueueEntry
    reason: str
    status: str | None = None
    remote_mta: str = ""


def bounce_entry(
    session: Session, spool: Spool, entry: QueueEntry, *, reason: str, now: float, hostname: str,
    status: str | None = None, remote_mta: str = "",
) -> str | None:
    """Bounce one entry; return its spool path if no entry uses it any more (remove it after
    the commit). The DSN goes to the envelope sender unless the entry is itself a DSN or has
    the null sender: a bounce is never bounced (RFC 5321 section 4.5.5)."""
    item = BounceItem(entry=entry, reason=reason, status=status, remote_mta=remote_mta)
    orphans = bounce_entries(session, spool, [item], now=now, hostname=hostname)
    return orphans[0] if orphans else None


def bounce_entries(
    session: Session, spool: Spool, items: Sequence[BounceItem], *, now: float, hostname: str
) -> list[str]:
    """Bounce several entries; recipients of one message share one DSN. Returns orphaned paths.

    The DSN body is written to the spool before the caller commits; if the transaction then
    rolls back, that file is left unreferenced (harmless; spool sweeps remove such files).
    """
    orphans: list[str] = []
    for group in _by_message(items):
        first = group[0].entry
        dsn_id = None
        if not first.is_dsn and first.sender:
            dsn_id = _queue_dsn(session, spool, group, now=now, hostname=hostname)
        for item in group:
            e = item.entry
            _log_bounce(item, dsn_id)
            orphan = q.finish(session, e, Action.BOUNCE, now=now, error=item.reason)
            if orphan and orphan not in orphans:
                orphans.append(orphan)
    return orphans


def bounce_all(
    session: Session, spool: Spool, entries: Sequence[QueueEntry], *, reason: str, now: float,
    hostname: str,
) -> list[str]:
    """Bounce `entries` (a bulk bounce's chunk, locked by the caller) for one `reason`:
    recipients of one message get ONE DSN (one spool write and fsync) listing them all, and the
    history rows and removals are set-based (queue.bulk.finish_many). Returns orphaned paths."""
    for group in _by_message([BounceItem(entry=e, reason=reason) for e in entries]):
        first = group[0].entry
        dsn_id = None
        if not first.is_dsn and first.sender:
            dsn_id = _queue_dsn(session, spool, group, now=now, hostname=hostname)
        for item in group:
            _log_bounce(item, dsn_id)
    return finish_many(session, [e.id for e in entries], Action.BOUNCE, now=now, error=reason)


def _by_message(items: Sequence[BounceItem]) -> list[list[BounceItem]]:
    """Items grouped by message (msgid, sender, body): each group gets one DSN."""
    groups: dict[tuple[str, str, str], list[BounceItem]] = {}
    for item in items:
        e = item.entry
        groups.setdefault((e.msgid, e.sender, e.path), []).append(item)
    return list(groups.values())


def _log_bounce(item: BounceItem, dsn_id: str | None) -> None:
    e = item.entry
    log.info(
        "bounced %s:%d to %s: %s; %s", e.msgid, e.id, e.rcpt, item.reason,
        f"DSN {dsn_id} queued to {e.sender}" if dsn_id else "no DSN (bounce or null sender)",
    )


def _queue_dsn(
    session: Session, spool: Spool, group: Sequence[BounceItem], *, now: float, hostname: str
) -> str:
    first = group[0].entry
    try:
        headers = spool.read_headers(first.path)
    except NotFound:
        headers = b""
    msgid = str(uuid.uuid4())
    body = build_dsn(
        hostname=hostname, original_sender=first.sender, original_headers=headers,
        original_subject=first.subject, arrival=first.ts0, now=now,
        recipients=[_failed(item, now) for item in group], original_msgid=first.msgid,
        message_id=f"<{msgid}@{hostname}>",
    )
    path = spool.write(msgid, body)
    q.enqueue(session, NewMessage(
        msgid=msgid, envelope=Envelope(sender="", recipients=(first.sender,), helo=hostname),
        path=path, size=len(body), subject=subject_line(first.subject), received=now,
        transport=first.transport, is_dsn=True,
    ), now=now)
    return msgid


def _failed(item: BounceItem, now: float) -> FailedRecipient:
    status = item.status
    if status is None:
        found = enhanced_status(item.reason)
        status = found if found and found.startswith("5.") else "5.0.0"
    return FailedRecipient(
        recipient=item.entry.rcpt, status=status, diagnostic=item.reason,
        remote_mta=item.remote_mta, last_attempt=now, queueid=item.entry.id,
    )
