"""The bounce notifier: the DSNs of bulk-bounced messages, written after the bounce committed.

A bulk bounce commits, per message, a bounce notice with its recipients' BOUNCE history rows
(bounce.handling.bounce_all). This turns notices into queued DSNs a batch at a time: the bodies
through group commit, then one short transaction inserts the DSN entries and deletes the
notices.
A crash before that commit leaves the notices, written again at the next start (no DSN is lost
or sent twice), and bodies nothing refers to (the spool sweep removes them); a failure that is
not a crash removes those bodies at once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import delete, func, select

from appliance import crashpoint
from appliance.bounce.dsn import FailedRecipient
from appliance.bounce.handling import dsn_message, failed_recipient
from appliance.db.engine import Store
from appliance.db.models_bounce import BounceNotice
from appliance.db.sets import in_values
from appliance.errors import Conflict
from appliance.queue import store as q
from appliance.queue.spool import Spool
from appliance.stats.periodic import Periodic
from appliance.types import NewMessage

log = logging.getLogger(__name__)

BATCH = 1000  # notices per batch: one group commit of bodies, one short write transaction
# Originals whose headers are held at once (each at most 256 KiB): memory stays bounded.
_HEADER_READS = 256


def write_dsns(store: Store, spool: Spool, *, now: float, hostname: str,
               limit: int = BATCH) -> tuple[int, list[str]]:
    """Queue the DSNs of up to `limit` notices, oldest first. Returns how many were queued and
    the originals' spool paths nothing refers to any more (remove them after this returns).

    The notices are read, and their DSNs built and made durable, outside any write
    transaction; the one that queues them and deletes the notices is short, so SQLite's
    receivers never wait long for the write lock while thousands of DSNs are written.
    """
    with store.transaction(read_only=True) as session:
        notices = session.execute(select(*BounceNotice.__table__.columns)
                                  .order_by(BounceNotice.id).limit(limit)).all()
    if not notices:
        return 0, []
    messages: list[NewMessage] = []
    with spool.batch() as batch:  # durable when the block is left, removed if it fails
        for start in range(0, len(notices), _HEADER_READS):
            part = notices[start:start + _HEADER_READS]
            for notice, headers in zip(part, batch.headers([n.path for n in part])):
                message, body = _dsn(notice, headers or b"", now=now, hostname=hostname)
                messages.append(dataclasses.replace(message, path=batch.write(message.msgid, body)))
    try:
        with store.transaction() as session:
            taken = session.execute(delete(BounceNotice).where(
                in_values(session, BounceNotice.id, [n.id for n in notices]))
                .execution_options(synchronize_session=False))
            if taken.rowcount != len(notices):  # type: ignore[attr-defined]
                raise Conflict("bounce notices were taken by another writer: none queued")
            q.enqueue_many(session, messages, now=now)
            paths = {n.path for n in notices} - {""}
            orphans = sorted(paths - q.paths_in_use(session, paths))
            crashpoint.reached("bounce.notices.written")  # DSN bodies durable, nothing committed
    except BaseException:
        spool.remove_many([m.path for m in messages])  # a kill leaves them to the spool sweep
        raise
    for notice, message in zip(notices, messages):
        log.info("DSN %s queued to %s for %s (bounced %d recipients)", message.msgid,
                 notice.sender, notice.msgid, len(_recipients(notice)))
    return len(messages), orphans


def pending(store: Store) -> int:
    """How many bounced messages still wait for their DSN."""
    with store.transaction(read_only=True) as session:
        return int(session.scalar(select(func.count()).select_from(BounceNotice)) or 0)


def _dsn(notice: Any, headers: bytes, *, now: float, hostname: str) -> tuple[NewMessage, bytes]:
    failed = _recipients(notice)
    try:
        return dsn_message(notice, failed, headers=headers, now=now, hostname=hostname)
    except Exception:  # an original's headers this cannot quote must not hold back every DSN
        log.exception("DSN for %s: the original's headers cannot be quoted; sent without them",
                      notice.msgid)
        return dsn_message(notice, failed, headers=b"", now=now, hostname=hostname)


def _recipients(notice: Any) -> Sequence[FailedRecipient]:
    return [failed_recipient(rcpt, notice.reason, queueid=int(queueid), last_attempt=notice.created)
            for rcpt, queueid in json.loads(notice.recipients)]


class BounceNotifier(Periodic):
    """Writes the DSNs owed by bulk bounces: every second, and batch after batch until none is
    left; each batch wakes delivery (`kick`, called from this thread)."""

    thread_name = "bounce-notices"
    tick_at_start = True
    interval = 1.0

    def __init__(self, store: Store, spool: Spool, *, hostname: Callable[[], str],
                 kick: Callable[[], None] = lambda: None, batch: int = BATCH,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._batch = batch
        self._store = store
        self._spool = spool
        self._hostname = hostname
        self._kick = kick
        self._clock = clock
        self.queued = 0

    def tick(self) -> int:
        queued = 0
        while not self._stop.is_set():
            try:
                done, orphans = write_dsns(self._store, self._spool, now=self._clock(),
                                           hostname=self._hostname(), limit=self._batch)
            except Exception:
                log.exception("bounce notices: cannot write DSNs (tried again in a second)")
                break
            if orphans:
                self._spool.remove_many(orphans)
            if not done:
                break
            queued += done
            self._kick()
        self.queued += queued
        return queued
