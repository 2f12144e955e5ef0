"""bounce_entry on SQLite and PostgreSQL: DSN queued to the sender, BOUNCE row, entry removed."""

from __future__ import annotations

import email
import uuid

from sqlalchemy import select

from appliance.bounce.handling import BounceItem, bounce_entries, bounce_entry
from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, QueueEntry
from appliance.queue import store as q
from appliance.queue.spool import Spool
from appliance.types import Envelope, NewMessage

BODY = b"From: alice@sender.test\r\nSubject: Hello there\r\nMessage-ID: <m1@sender.test>\r\n\r\nsecret body\r\n"


def _queue(store: Store, spool: Spool, *rcpts: str, sender: str = "alice@sender.test",
           is_dsn: bool = False) -> list[int]:
    msgid = str(uuid.uuid4())
    path = spool.write(msgid, BODY)
    with store.transaction() as s:
        return q.enqueue(s, NewMessage(
            msgid=msgid, envelope=Envelope(sender=sender, recipients=rcpts, listener="inbound"),
            path=path, size=len(BODY), subject="Hello there", received=1000.0, transport="out",
            is_dsn=is_dsn, metadata={"k": "v"},
        ), now=1000.0)


def _bounce(store: Store, spool: Spool, qid: int, reason: str = "bounced by administrator") -> str | None:
    with store.transaction() as s:
        entry = q.get_entry(s, qid)
        return bounce_entry(s, spool, entry, reason=reason, now=2000.0, hostname="gw.test")


def test_bounce_queues_a_dsn_to_the_sender_and_writes_history(store: Store, spool: Spool) -> None:
    [qid] = _queue(store, spool, "bob@dest.test")
    orphan = _bounce(store, spool, qid, "550 5.1.1 no such user")
    with store.transaction(read_only=True) as s:
        [dsn] = s.scalars(select(QueueEntry)).all()
        [hist] = s.scalars(select(HistoryEntry)).all()
        hist_meta = q.metadata_of(s, [hist.id], history=True)
    assert orphan is not None and orphan != dsn.path
    spool.remove(orphan)
    assert hist.action == "BOUNCE" and hist.queueid == qid and hist.error == "550 5.1.1 no such user"
    assert hist_meta == {hist.id: {"k": "v"}}
    assert (dsn.sender, dsn.rcpt, dsn.is_dsn, dsn.state, dsn.transport) == ("", "alice@sender.test", 1, "ACTIVE", "out")
    assert dsn.subject == "Undelivered Mail Returned to Sender: Hello there"
    raw = spool.read(dsn.path)
    assert dsn.size == len(raw)
    msg = email.message_from_bytes(raw)
    assert msg.get_content_type() == "multipart/report"
    status = msg.get_payload()[1].get_payload()
    assert status[1]["Final-Recipient"] == "rfc822; bob@dest.test"
    assert status[1]["Status"] == "5.1.1"
    returned = msg.get_payload()[2].get_payload()
    assert "Message-ID: <m1@sender.test>" in returned and "secret body" not in returned


def test_spool_file_is_kept_while_other_recipients_remain(store: Store, spool: Spool) -> None:
    first, second = _queue(store, spool, "a@dest.test", "b@dest.test")
    assert _bounce(store, spool, first) is None
    with store.transaction(read_only=True) as s:
        assert s.get(QueueEntry, second) is not None


def test_a_bounce_is_never_bounced(store: Store, spool: Spool) -> None:
    [dsn_id] = _queue(store, spool, "alice@sender.test", sender="", is_dsn=True)
    [null_id] = _queue(store, spool, "bob@dest.test", sender="")
    [flagged] = _queue(store, spool, "bob@dest.test", sender="x@y.test", is_dsn=True)
    for qid in (dsn_id, null_id, flagged):
        assert _bounce(store, spool, qid) is not None
    with store.transaction(read_only=True) as s:
        assert s.scalars(select(QueueEntry)).all() == []
        assert [h.action for h in s.scalars(select(HistoryEntry))] == ["BOUNCE"] * 3


def test_recipients_of_one_message_share_one_dsn(store: Store, spool: Spool) -> None:
    ids = _queue(store, spool, "a@dest.test", "b@dest.test")
    with store.transaction() as s:
        items = [BounceItem(entry=q.get_entry(s, i), reason="451 4.4.1 timeout", status="4.4.7") for i in ids]
        orphans = bounce_entries(s, spool, items, now=2000.0, hostname="gw.test")
    assert len(orphans) == 1
    with store.transaction(read_only=True) as s:
        [dsn] = s.scalars(select(QueueEntry)).all()
    blocks = email.message_from_bytes(spool.read(dsn.path)).get_payload()[1].get_payload()
    assert [(b["Final-Recipient"], b["Status"]) for b in blocks[1:]] == [
        ("rfc822; a@dest.test", "4.4.7"), ("rfc822; b@dest.test", "4.4.7")]


def test_missing_spool_file_still_bounces(store: Store, spool: Spool) -> None:
    [qid] = _queue(store, spool, "bob@dest.test")
    with store.transaction(read_only=True) as s:
        spool.remove(q.get_entry(s, qid).path)
    _bounce(store, spool, qid)
    with store.transaction(read_only=True) as s:
        [dsn] = s.scalars(select(QueueEntry)).all()
    assert email.message_from_bytes(spool.read(dsn.path)).get_content_type() == "multipart/report"
