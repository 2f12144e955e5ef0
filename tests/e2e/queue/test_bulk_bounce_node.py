"""mailQueueBounceBulk on a live node of processes: the call commits the bounces, and the
housekeeping process's bounce notifier then queues one DSN per message, listing each of its
bounced recipients, which delivery sends to the original sender through a loopback sink."""

from __future__ import annotations

import email
import smtplib
from email.message import Message
from pathlib import Path
from typing import Any

import requests
import zeep

from tests.e2e.delivery.sink import Sink
from tests.support.node import RunningNode
from tests.support.wait import wait_until

CONFIG = "[queue]\nretry_schedule = [3600]\n"  # refused recipients wait an hour in the queue


def _soap(node: RunningNode) -> Any:
    session = requests.Session()
    session.auth = ("admin", node.admin_password)
    return zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=session)).service


def _report(content: bytes) -> tuple[list[tuple[str, str]], Message]:
    """A DSN's (Final-Recipient, Status) fields and its quoted headers."""
    parts = email.message_from_bytes(content).get_payload()
    assert isinstance(parts, list)
    fields = parts[1].get_payload()
    quoted = parts[2].get_payload()
    quoted = quoted[0] if isinstance(quoted, list) else email.message_from_string(quoted)
    return [(f["Final-Recipient"], f["Status"]) for f in fields[1:]], quoted


def test_bulk_bounce_returns_before_its_dsns_which_reach_the_senders(tmp_path: Path) -> None:
    with Sink() as sink:
        gone = ["a@gone.example", "b@gone.example", "c@gone.example"]
        sink.handler.rcpt_replies = {r: "451 4.2.1 mailbox busy" for r in gone}
        node = RunningNode(tmp_path, config_text=CONFIG, relay=("127.0.0.1", sink.port)).start()
        try:
            with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as smtp:
                smtp.sendmail("one@sender.example", gone[:2], "Subject: first\r\n\r\nbody\r\n")
                smtp.sendmail("two@sender.example", gone[2:], "Subject: second\r\n\r\nbody\r\n")
                smtp.sendmail("", gone[:1], "Subject: a bounce\r\n\r\nbody\r\n")  # never bounced
            api = _soap(node)
            wait_until(lambda: api.mailHistory(
                filter="action=DEFER to~%@gone.example", offset=0, limit=1,
                options={"totalhits": True}).totalhits == 4, what="first attempts deferred")
            assert api.mailQueueBounceBulk(filter="to~%@gone.example") == 4
            assert api.mailQueueCount(filter="to~%@gone.example") == 0
            bounced = api.mailHistory(filter="action=BOUNCE", offset=0, limit=10,
                                      options={"totalhits": True})
            assert bounced.totalhits == 4
            dsns = wait_until(lambda: len(sink.messages) == 2 and sorted(
                sink.messages, key=lambda m: m.rcpt_tos), what="two DSNs delivered")
            assert [(m.mail_from, m.rcpt_tos) for m in dsns] == [
                ("<>", ["one@sender.example"]), ("<>", ["two@sender.example"])]
            first, quoted = _report(dsns[0].content)
            assert first == [("rfc822; a@gone.example", "5.0.0"), ("rfc822; b@gone.example", "5.0.0")]
            assert quoted["Subject"] == "first"
            assert _report(dsns[1].content)[0] == [("rfc822; c@gone.example", "5.0.0")]
            # Delivered and gone: nothing is left queued, and no DSN was written twice.
            wait_until(lambda: api.mailQueueCount(filter="") == 0, what="the DSNs delivered")
            assert len(sink.messages) == 2
        finally:
            node.stop()
