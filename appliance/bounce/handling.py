"""Bouncing queue entries: a DSN to the sender (queued at once, or owed by a bounce notice for a
bulk bounce), a BOUNCE history row, the entry removed."""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from appliance.bounce.dsn import FailedRecipient, build_dsn, subject_line
from appliance.db.models import QueueEntry
from appliance.db.models_bounce import BounceNotice
from appliance.replies import enhanced_status
from appliance.errors import NotFound
from appliance.queue import store as q
from appliance.queue.bulk import finish_many
from appliance.queue.spool import Spool
from appliance.types import Action, Envelope, NewMessage

log = logging.getLogger(__name__)
_NOTICES = cast(Table, BounceNotice.__table__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BounceItem:
    """One entry to bounce and why; `status` defaults to the reason's 5.x.x code or 5.0.0."""

    entry: Any  # a QueueEntry, or a row with the queue table's columns
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
            _log_bounce(item, f"DSN {dsn_id} queued to {e.sender}" if dsn_id else _NO_DSN)
            orphan = q.finish(session, e, Action.BOUNCE, now=now, error=item.reason)
            if orphan and orphan not in orphans:
                orphans.append(orphan)
    return orphans


def bounce_all(session: Session, entries: Sequence[Any], *, reason: str, now: float) -> list[str]:
    """Bounce `entries` (a bulk bounce's chunk, locked by the caller) for one `reason`: queue
    entries, or rows with the queue table's columns (queue.bulk reads them so).

    Set-based, in the caller's transaction: a BOUNCE history row per entry and the entries
    removed (queue.bulk.finish_many), and for each message that gets a DSN, ONE bounce notice
    listing all its bounced recipients. The DSNs themselves are written after the commit by
    the bounce notifier (bounce.notices), which keeps a bulk bounce as cheap as a delete: no
    header reads, no body writes, no DSN entries while the chunk holds the write lock. A
    notice keeps the original's body until its DSN is queued. Returns orphaned paths.
    """
    notices: list[dict[str, object]] = []
    for group in _by_message([BounceItem(entry=e, reason=reason) for e in entries]):
        first = group[0].entry
        owed = not first.is_dsn and bool(first.sender)
        if owed:
            notices.append(dict(
                created=now, msgid=first.msgid, sender=first.sender, subject=first.subject,
                ts0=first.ts0, path=first.path, transport=first.transport, reason=reason,
                recipients=json.dumps([[item.entry.rcpt, item.entry.id] for item in group])))
        for item in group:
            _log_bounce(item, f"DSN to {first.sender} owed (bounce notice)" if owed else _NO_DSN)
    if notices:  # before finish_many: the notices keep the originals' bodies in use
        session.connection().execute(insert(_NOTICES), notices)  # Core: no objects back
    return finish_many(session, [e.id for e in entries], Action.BOUNCE, now=now, error=reason)


def _by_message(items: Sequence[BounceItem]) -> list[list[BounceItem]]:
    """Items grouped by message (msgid, sender, body): each group gets one DSN."""
    groups: dict[tuple[str, str, str], list[BounceItem]] = {}
    for item in items:
        e = item.entry
        groups.setdefault((e.msgid, e.sender, e.path), []).append(item)
    return list(groups.values())


def _log_bounce(item: BounceItem, dsn: str) -> None:
    """`dsn`: what the sender gets."""
    e = item.entry
    log.info("bounced %s:%d to %s: %s; %s", e.msgid, e.id, e.rcpt, item.reason, dsn)


_NO_DSN = "no DSN (bounce or null sender)"


def dsn_message(original: Any, failed: Sequence[FailedRecipient], *, headers: bytes, now: float,
                hostname: str) -> tuple[NewMessage, bytes]:
    """The DSN for one message's failed recipients: the message to queue (its path not yet
    set) and its body. `original` is the queue entry or bounce notice it reports on (msgid,
    sender, subject, ts0, transport); `headers` are the original's, quoted in the DSN."""
    msgid = str(uuid.uuid4())
    body = build_dsn(
        hostname=hostname, original_sender=original.sender, original_headers=headers,
        original_subject=original.subject, arrival=original.ts0, now=now, recipients=failed,
        original_msgid=original.msgid, message_id=f"<{msgid}@{hostname}>",
    )
    message = NewMessage(
        msgid=msgid, envelope=Envelope(sender="", recipients=(original.sender,), helo=hostname),
        path="", size=len(body), subject=subject_line(original.subject), received=now,
        transport=original.transport, is_dsn=True,
    )
    return message, body


def _queue_dsn(
    session: Session, spool: Spool, group: Sequence[BounceItem], *, now: float, hostname: str
) -> str:
    first = group[0].entry
    try:
        headers = spool.read_headers(first.path)
    except NotFound:
        headers = b""
    failed = [failed_recipient(item.entry.rcpt, item.reason, queueid=item.entry.id,
                               last_attempt=now, status=item.status, remote_mta=item.remote_mta)
              for item in group]
    message, body = dsn_message(first, failed, headers=headers, now=now, hostname=hostname)
    path = spool.write(message.msgid, body)
    q.enqueue(session, dataclasses.replace(message, path=path), now=now)
    return message.msgid


def failed_recipient(rcpt: str, reason: str, *, queueid: int, last_attempt: float,
                     status: str | None = None, remote_mta: str = "") -> FailedRecipient:
    """A DSN's per-recipient fields; `status` defaults to the reason's 5.x.x code or 5.0.0."""
    if status is None:
        found = enhanced_status(reason)
        status = found if found and found.startswith("5.") else "5.0.0"
    return FailedRecipient(recipient=rcpt, status=status, diagnostic=reason, remote_mta=remote_mta,
                           last_attempt=last_attempt, queueid=queueid)
