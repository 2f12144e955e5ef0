"""Bouncing queue entries: a DSN queued to the sender, a BOUNCE history row, the entry removed."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from typing import Any

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
# Originals whose headers a bulk bounce holds at once (each at most 256 KiB): memory stays
# bounded whatever the chunk size.
_HEADER_READS = 256


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
            _log_bounce(item, dsn_id)
            orphan = q.finish(session, e, Action.BOUNCE, now=now, error=item.reason)
            if orphan and orphan not in orphans:
                orphans.append(orphan)
    return orphans


def bounce_all(
    session: Session, spool: Spool, entries: Sequence[Any], *, reason: str, now: float,
    hostname: str,
) -> list[str]:
    """Bounce `entries` (a bulk bounce's chunk, locked by the caller) for one `reason`: queue
    entries, or rows with the queue table's columns (queue.bulk reads them so).

    Recipients of one message get ONE DSN listing them all. The chunk's DSNs are written
    through group commit: every body first, then one concurrent fsync pass over the bodies and
    their directories (Spool.batch), then one multi-row insert; history rows and removals are
    set-based (queue.bulk.finish_many). If anything fails before the caller commits, the
    bodies written here are removed again; if the commit itself fails they are left
    unreferenced and the spool sweep (queue.sweep) removes them. Returns orphaned paths.
    """
    messages: list[NewMessage] = []
    groups = _by_message([BounceItem(entry=e, reason=reason) for e in entries])
    with spool.batch() as batch:
        for start in range(0, len(groups), _HEADER_READS):
            part = groups[start:start + _HEADER_READS]
            wanted = [g for g in part if not g[0].entry.is_dsn and g[0].entry.sender]
            # The originals' headers first, read concurrently and before this part's DSN files
            # are created (a lookup waits for creates in the same directory).
            heads = dict(zip(map(id, wanted), batch.headers([g[0].entry.path for g in wanted])))
            for group in part:
                dsn_id = None
                if id(group) in heads:
                    dsn = _dsn_message(spool, group, now=now, hostname=hostname,
                                       headers=heads[id(group)] or b"")
                    path = batch.write(dsn.message.msgid, dsn.pop())
                    messages.append(dataclasses.replace(dsn.message, path=path))
                    dsn_id = dsn.message.msgid
                for item in group:
                    _log_bounce(item, dsn_id)
        try:
            q.enqueue_many(session, messages, now=now)
            return finish_many(session, [e.id for e in entries], Action.BOUNCE, now=now, error=reason)
        except BaseException:
            batch.discard()
            raise


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


@dataclasses.dataclass
class _Dsn:
    message: NewMessage  # path not yet set
    body: bytes | None

    def pop(self) -> bytes:
        body, self.body = self.body, None
        assert body is not None
        return body


def _dsn_message(spool: Spool, group: Sequence[BounceItem], *, now: float, hostname: str,
                 headers: bytes | None = None) -> _Dsn:
    """The DSN for one message's bounced recipients, as a message to queue and its body."""
    first = group[0].entry
    if headers is None:
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
    message = NewMessage(
        msgid=msgid, envelope=Envelope(sender="", recipients=(first.sender,), helo=hostname),
        path="", size=len(body), subject=subject_line(first.subject), received=now,
        transport=first.transport, is_dsn=True,
    )
    return _Dsn(message, body)


def _queue_dsn(
    session: Session, spool: Spool, group: Sequence[BounceItem], *, now: float, hostname: str
) -> str:
    dsn = _dsn_message(spool, group, now=now, hostname=hostname)
    path = spool.write(dsn.message.msgid, dsn.pop())
    q.enqueue(session, dataclasses.replace(dsn.message, path=path), now=now)
    return dsn.message.msgid


def _failed(item: BounceItem, now: float) -> FailedRecipient:
    status = item.status
    if status is None:
        found = enhanced_status(item.reason)
        status = found if found and found.startswith("5.") else "5.0.0"
    return FailedRecipient(
        recipient=item.entry.rcpt, status=status, diagnostic=item.reason,
        remote_mta=item.remote_mta, last_attempt=now, queueid=item.entry.id,
    )
