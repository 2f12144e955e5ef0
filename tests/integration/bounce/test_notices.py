"""The bounce notifier on SQLite and PostgreSQL: bulk-bounce notices become one queued DSN per
message, batch after batch, each batch waking delivery; the originals' bodies go only once their
DSN is queued; a failure leaves the notices for the next tick."""

from __future__ import annotations

import email
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from appliance.bounce import notices
from appliance.bounce.handling import bounce_all
from appliance.bounce.notices import BounceNotifier, pending, write_dsns
from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.db.models_bounce import BounceNotice
from appliance.errors import Conflict, StoreUnavailable
from appliance.queue import store as q
from appliance.queue.bulk import act_on_matching
from appliance.queue.spool import Spool
from appliance.types import Envelope, NewMessage

NOW = 1_800_000_000.0
BODY = b"From: alice@sender.test\r\nSubject: Party\r\n\r\nbody\r\n"


def _queue(store: Store, spool: Spool, sender: str, *rcpts: str) -> str:
    msgid = str(uuid.uuid4())
    path = spool.write(msgid, BODY)
    with store.transaction() as s:
        q.enqueue(s, NewMessage(msgid=msgid, envelope=Envelope(sender=sender, recipients=rcpts),
                                path=path, size=len(BODY), subject="Party", received=NOW,
                                transport="mx"), now=NOW)
    return path


def _bounce(store: Store, spool: Spool) -> int:
    def bounce(session: Session, entries: Sequence[Any]) -> list[str]:
        return bounce_all(session, entries, reason="550 5.1.1 no such user", now=NOW + 1)
    return act_on_matching(store, "to~%@gone.test", "bounce", now=NOW + 1, bounce_many=bounce,
                           on_paths=spool.remove_many)


def _dsns(store: Store) -> list[QueueEntry]:
    with store.transaction(read_only=True) as s:
        return list(s.scalars(select(QueueEntry).where(QueueEntry.is_dsn == 1).order_by(QueueEntry.rcpt)))


def test_the_notifier_writes_batch_after_batch_and_wakes_delivery_after_each(store: Store, spool: Spool) -> None:
    paths = [_queue(store, spool, f"s{i}@sender.test", f"a{i}@gone.test", f"b{i}@gone.test")
             for i in range(5)]
    null = _queue(store, spool, "", "x@gone.test")  # a bounce is never bounced: no notice
    assert _bounce(store, spool) == 11 and pending(store) == 5
    assert sorted(spool.all_paths()) == sorted(paths)  # the null sender's body went at once
    kicks: list[int] = []
    notifier = BounceNotifier(store, spool, hostname=lambda: "gw.test", batch=2,
                              kick=lambda: kicks.append(pending(store)), clock=lambda: NOW + 5)
    assert notifier.tick() == 5
    assert kicks == [3, 1, 0] and pending(store) == 0 and notifier.queued == 5
    dsns = _dsns(store)
    assert [(d.sender, d.rcpt, d.ts0, d.transport) for d in dsns] == [
        ("", f"s{i}@sender.test", NOW + 5, "mx") for i in range(5)]
    assert sorted(spool.all_paths()) == sorted(d.path for d in dsns)  # the originals went
    assert null not in spool.all_paths()
    report = email.message_from_bytes(spool.read(dsns[0].path)).get_payload()
    fields = report[1].get_payload()
    assert [(f["Final-Recipient"], f["Status"], f["Diagnostic-Code"]) for f in fields[1:]] == [
        ("rfc822; a0@gone.test", "5.1.1", "smtp; 550 5.1.1 no such user"),
        ("rfc822; b0@gone.test", "5.1.1", "smtp; 550 5.1.1 no such user")]
    assert b"Subject: Party" in report[2].as_bytes()  # the original's headers, quoted
    assert notifier.tick() == 0 and kicks == [3, 1, 0]  # nothing owed: no wake-up


def test_a_notice_keeps_a_body_other_recipients_still_share(store: Store, spool: Spool) -> None:
    path = _queue(store, spool, "s@sender.test", "a@gone.test", "keep@here.test")
    assert _bounce(store, spool) == 1
    assert write_dsns(store, spool, now=NOW + 5, hostname="gw.test") == (1, [])
    assert path in spool.all_paths()  # keep@here.test's entry still uses it


def test_a_dsn_is_written_without_the_original_it_cannot_quote(
        store: Store, spool: Spool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    gone = _queue(store, spool, "s@sender.test", "a@gone.test")
    _queue(store, spool, "t@sender.test", "b@gone.test")
    spool.remove(gone)  # a body removed by hand: nothing to quote
    real = notices.dsn_message

    def picky(original: Any, failed: Any, *, headers: bytes, **kw: Any) -> Any:
        if b"Party" in headers and original.sender == "t@sender.test":
            raise ValueError("cannot quote these headers")
        return real(original, failed, headers=headers, **kw)

    monkeypatch.setattr(notices, "dsn_message", picky)
    assert _bounce(store, spool) == 2
    with caplog.at_level(logging.ERROR, logger="appliance.bounce.notices"):
        assert write_dsns(store, spool, now=NOW + 5, hostname="gw.test")[0] == 2
    assert "cannot be quoted" in caplog.text
    for dsn in _dsns(store):
        quoted = email.message_from_bytes(spool.read(dsn.path)).get_payload()[2].as_bytes()
        assert b"Subject: Party" not in quoted


def test_a_failed_batch_leaves_its_notices_for_the_next_tick(
        store: Store, spool: Spool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    path = _queue(store, spool, "s@sender.test", "a@gone.test")
    assert _bounce(store, spool) == 1

    def down(*args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("store unavailable: disk I/O error")

    monkeypatch.setattr(q, "enqueue_many", down)
    notifier = BounceNotifier(store, spool, hostname=lambda: "gw.test")
    with caplog.at_level(logging.ERROR, logger="appliance.bounce.notices"):
        assert notifier.tick() == 0
    assert "cannot write DSNs" in caplog.text
    assert (pending(store), spool.all_paths()) == (1, [path])  # its DSN body removed again
    monkeypatch.undo()
    assert notifier.tick() == 1 and pending(store) == 0 and len(_dsns(store)) == 1


def test_notices_another_writer_took_meanwhile_queue_no_dsn_twice(
        store: Store, spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    originals = {_queue(store, spool, f"s{i}@sender.test", f"a{i}@gone.test") for i in range(2)}
    assert _bounce(store, spool) == 2
    real = notices._dsn
    taken: list[int] = []

    def racing(notice: Any, headers: bytes, **kw: Any) -> Any:
        if not taken:  # another writer handles the first notice while this batch is built
            taken.append(notice.id)
            with store.transaction() as s:
                s.execute(delete(BounceNotice).where(BounceNotice.id == notice.id))
        return real(notice, headers, **kw)

    monkeypatch.setattr(notices, "_dsn", racing)
    with pytest.raises(Conflict):
        write_dsns(store, spool, now=NOW + 5, hostname="gw.test")
    assert (_dsns(store), pending(store)) == ([], 1)
    assert set(spool.all_paths()) == originals  # the batch's DSN bodies removed again
    monkeypatch.undo()
    assert write_dsns(store, spool, now=NOW + 5, hostname="gw.test")[0] == 1
