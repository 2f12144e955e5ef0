"""What scripts reach in the node's queue: metadata on entries, queue metrics, notifications."""

from __future__ import annotations

import email.message
import email.utils
import logging
import time
import uuid
from collections.abc import Callable

from sqlalchemy import ColumnElement, func, select

from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, HistoryMetadata, QueueEntry
from appliance.errors import InvalidInput, NotFound
from appliance.queue import store as queue_store
from appliance.queue.spool import Spool
from appliance.types import Envelope, NewMessage

log = logging.getLogger(__name__)

# queue_metric(field, value): how many queued entries (any state) have `field` = value.
METRIC_FIELDS = {
    "transport": QueueEntry.transport,
    "domain": QueueEntry.rcpt_domain,
    "recipient": QueueEntry.rcpt,
    "sender": QueueEntry.sender,
    "sender_domain": QueueEntry.sender_domain,
    "sasl": QueueEntry.sasl,
    "listener": QueueEntry.listener,
    "state": QueueEntry.state,
}


def count_queued(session: object, *, field: str, value: str,
                 where: ColumnElement[bool] | None = None) -> int:
    """Entries in the queue whose `field` equals `value` (domains compared lower-case), among
    those matching `where` when given (scriptTest run by a restricted user)."""
    column = METRIC_FIELDS.get(field)
    if column is None:
        raise InvalidInput(f"queue_metric field must be one of {', '.join(METRIC_FIELDS)}")
    if field in ("domain", "sender_domain"):
        value = value.lower()
    stmt = select(func.count()).select_from(QueueEntry).where(column == value)
    if where is not None:
        stmt = stmt.where(where)
    return int(session.scalar(stmt) or 0)  # type: ignore[attr-defined]


class StoreQueueAccess:
    """set_metadata / queue_metric for pre- and post-delivery scripts, one short transaction each."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def set_metadata(self, queueid: int, key: str, value: str, *, msgid: str = "") -> None:
        """On the queue entry; once it is gone (post-delivery of a final outcome), on its newest
        history row, so that what a post-delivery script records stays searchable. `msgid`
        guards against a queue id that SQLite reused for a newer entry."""
        with self._store.transaction() as session:
            entry = session.get(QueueEntry, queueid)
            if entry is not None and (not msgid or entry.msgid == msgid):
                queue_store.set_metadata(session, queueid, key, value)
                return
            stmt = select(HistoryEntry.id).where(HistoryEntry.queueid == queueid)
            if msgid:
                stmt = stmt.where(HistoryEntry.msgid == msgid)
            history_id = session.scalar(stmt.order_by(HistoryEntry.id.desc()).limit(1))
            if history_id is None:
                raise NotFound(f"no queue entry or history for {queueid}")
            row = session.get(HistoryMetadata, (history_id, key))
            if row is None:
                session.add(HistoryMetadata(entry_id=history_id, key=key, value=value))
            else:
                row.value = value

    def queue_metric(self, field: str, value: str) -> int:
        with self._store.transaction(read_only=True) as session:
            return count_queued(session, field=field, value=value)


class QueueMailer:
    """mail(from, to, subject, body): a plain-text message written to the spool and queued."""

    def __init__(self, store: Store, spool: Spool, *, transport: Callable[[], str] = lambda: "default",
                 hostname: Callable[[], str] = lambda: "localhost",
                 clock: Callable[[], float] = time.time, on_enqueued: Callable[[], None] | None = None) -> None:
        self._store = store
        self._spool = spool
        self._transport = transport
        self._hostname = hostname
        self._clock = clock
        self._on_enqueued = on_enqueued

    def send(self, sender: str, recipient: str, subject: str, body: str) -> str:
        for address in (sender, recipient):
            if "\r" in address or "\n" in address or (address and "@" not in address):
                raise InvalidInput(f"mail(): {address!r} is not an address")
        if not recipient:
            raise InvalidInput("mail(): a recipient is needed")
        msgid = str(uuid.uuid4())
        now = self._clock()
        data = self._compose(sender, recipient, subject, body, msgid, now)
        path = self._spool.write(msgid, data)
        message = NewMessage(msgid=msgid, envelope=Envelope(sender=sender, recipients=(recipient,)),
                             path=path, size=len(data), subject=subject, received=now,
                             transport=self._transport())
        try:
            with self._store.transaction() as session:
                ids = queue_store.enqueue(session, message, now=now)
        except BaseException:
            self._spool.remove(path)
            raise
        log.info("queued policy notification <%s>:%d from <%s> to <%s>", msgid, ids[0], sender, recipient)
        if self._on_enqueued is not None:
            self._on_enqueued()
        return msgid

    def _compose(self, sender: str, recipient: str, subject: str, body: str, msgid: str, now: float) -> bytes:
        msg = email.message.EmailMessage()
        msg["From"] = sender or f"MAILER-DAEMON@{self._hostname()}"
        msg["To"] = recipient
        msg["Subject"] = subject.replace("\r", " ").replace("\n", " ")
        msg["Date"] = email.utils.formatdate(now)
        msg["Message-ID"] = f"<{msgid}@{self._hostname()}>"
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5: no auto-replies to this
        msg.set_content(body)
        return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
