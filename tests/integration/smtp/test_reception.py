"""SMTP reception into a real store (SQLite and PostgreSQL): what gets queued, and how."""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Callable

from sqlalchemy import select, text

from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, QueueEntry
from appliance.queue.spool import Spool
from tests.integration.smtp.conftest import SmtpHarness

MESSAGE = b"From: a@example.com\r\nSubject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\n\r\nHello\r\n..dot\r\n"


def queued(store: Store) -> list[QueueEntry]:
    with store.transaction(read_only=True) as session:
        return list(session.scalars(select(QueueEntry).order_by(QueueEntry.id)))


def test_accepted_message_is_spooled_and_queued_per_recipient(
    smtp_server: Callable[..., SmtpHarness], store: Store, spool: Spool,
) -> None:
    harness = smtp_server()
    with smtplib.SMTP("127.0.0.1", harness.port) as client:
        client.ehlo("client.example")
        client.mail("a@example.com")
        client.rcpt("b@example.org")
        client.rcpt("C@Example.ORG")
        code, reply = client.data(MESSAGE)
    assert code == 250
    msgid = reply.decode().rsplit(" ", 1)[1]
    assert str(uuid.UUID(msgid)) == msgid
    entries = queued(store)
    assert [e.rcpt for e in entries] == ["b@example.org", "C@Example.ORG"]
    first = entries[0]
    assert {e.msgid for e in entries} == {msgid}
    assert (first.sender, first.sender_domain, first.rcpt_domain) == ("a@example.com", "example.com", "example.org")
    assert (first.listener, first.fromserver, first.helo, first.transport) == ("inbound", "127.0.0.1", "client.example", "default")
    assert (first.subject, first.state, first.sasl) == ("grüße", "ACTIVE", "")
    body = spool.read(first.path)
    assert first.size == len(body)
    assert body.startswith(b"Received: from client.example ([127.0.0.1])")
    assert f"id {msgid}".encode() in body
    assert body.endswith(MESSAGE)  # smtplib dot-stuffs, the listener unstuffs
    assert harness.enqueued == 1


def test_null_sender_is_accepted(smtp_server: Callable[..., SmtpHarness], store: Store) -> None:
    harness = smtp_server()
    with smtplib.SMTP("127.0.0.1", harness.port) as client:
        client.sendmail("<>", ["b@example.org"], MESSAGE)
    (entry,) = queued(store)
    assert (entry.sender, entry.sender_domain) == ("", "")


def test_a_failing_store_answers_451_keeps_nothing_and_recovers(
    smtp_server: Callable[..., SmtpHarness], store: Store, spool: Spool,
) -> None:
    harness = smtp_server()
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE queue RENAME TO queue_away"))
    try:
        with smtplib.SMTP("127.0.0.1", harness.port) as client:
            client.ehlo("x")
            client.mail("a@example.com")
            client.rcpt("b@example.org")
            code, reply = client.data(MESSAGE)
        assert code == 451, reply
        assert spool.all_paths() == []  # the body of an unacknowledged message is not kept
    finally:
        with store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE queue_away RENAME TO queue"))
    with smtplib.SMTP("127.0.0.1", harness.port) as client:
        assert client.sendmail("a@example.com", ["b@example.org"], MESSAGE) == {}
    assert len(queued(store)) == 1
    assert len(spool.all_paths()) == 1


def test_a_deleted_only_message_leaves_history_but_no_spool_file(
    smtp_server: Callable[..., SmtpHarness], store: Store, spool: Spool,
) -> None:
    from appliance.policy.flow import DataResult, Decision, DefaultFlow, SessionInfo, Verdict

    class DeleteAll(DefaultFlow):
        def data(self, session: SessionInfo, message: bytes) -> DataResult:
            return DataResult(verdict=Verdict(decision=Decision.DELETE))

    harness = smtp_server(flow=DeleteAll())
    with smtplib.SMTP("127.0.0.1", harness.port) as client:
        assert client.sendmail("a@example.com", ["b@example.org", "c@example.org"], MESSAGE) == {}
    assert queued(store) == []
    assert spool.all_paths() == []
    with store.transaction(read_only=True) as session:
        rows = list(session.scalars(select(HistoryEntry).order_by(HistoryEntry.id)))
    assert [(r.rcpt, r.action) for r in rows] == [("b@example.org", "DELETE"), ("c@example.org", "DELETE")]
