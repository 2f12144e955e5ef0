"""The RFC 3464 DSN builder, checked by parsing its output with the email package."""

from __future__ import annotations

import email
import email.policy
from email.message import Message

import pytest

from appliance.bounce.dsn import FailedRecipient, build_dsn

ORIGINAL = (
    b"From: Alice <alice@sender.test>\r\nTo: bob@dest.test\r\nSubject: Quarterly report\r\n"
    b"Message-ID: <orig-1@sender.test>\r\n\r\n"
)


def _build(**kw: object) -> bytes:
    args: dict[str, object] = dict(
        hostname="mx.node.test", original_sender="alice@sender.test", original_headers=ORIGINAL,
        original_subject="Quarterly report", arrival=1_700_000_000.0, now=1_700_000_600.0,
        recipients=[FailedRecipient(recipient="bob@dest.test", status="5.1.1",
                                    diagnostic="550 5.1.1 <bob@dest.test>: no such user",
                                    remote_mta="mx.dest.test", last_attempt=1_700_000_600.0, queueid=7)],
        original_msgid="0b6f4f9e-0000-4000-8000-000000000001",
    )
    args.update(kw)
    return build_dsn(**args)  # type: ignore[arg-type]


def _parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def test_structure_is_multipart_report_with_three_parts() -> None:
    raw = _build()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = _parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mx.node.test>"
    assert msg["To"] == "<alice@sender.test>"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender: Quarterly report"
    assert msg["Auto-Submitted"] == "auto-replied"
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert "no such user" in parts[0].get_payload(decode=True).decode()


def test_delivery_status_fields() -> None:
    msg = _parse(_build())
    per_message, per_rcpt = msg.get_payload()[1].get_payload()
    assert per_message["Reporting-MTA"] == "dns; mx.node.test"
    assert per_message["Arrival-Date"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert per_message["X-Appliance-Msgid"] == "0b6f4f9e-0000-4000-8000-000000000001"
    assert per_rcpt["Final-Recipient"] == "rfc822; bob@dest.test"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Remote-MTA"] == "dns; mx.dest.test"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@dest.test>: no such user"
    assert per_rcpt["X-Appliance-Queue-ID"] == "7"


def test_original_headers_are_returned() -> None:
    msg = _parse(_build())
    returned = msg.get_payload()[2].get_payload()
    assert "Message-ID: <orig-1@sender.test>" in returned
    assert "Subject: Quarterly report" in returned


def test_several_recipients_and_a_local_reason() -> None:
    rcpts = [
        FailedRecipient(recipient="a@d.test", status="5.0.0", diagnostic="bounced by administrator"),
        FailedRecipient(recipient="b@d.test", status="4.4.7", diagnostic="451 4.3.0 try later"),
    ]
    blocks = _parse(_build(recipients=rcpts)).get_payload()[1].get_payload()
    assert [b["Final-Recipient"] for b in blocks[1:]] == ["rfc822; a@d.test", "rfc822; b@d.test"]
    assert blocks[1]["Diagnostic-Code"] == "X-Appliance; bounced by administrator"
    assert blocks[2]["Status"] == "4.4.7" and blocks[2]["Diagnostic-Code"].startswith("smtp; 451")


def test_non_ascii_subject_is_encoded_and_round_trips() -> None:
    raw = _build(original_subject="Grüße aus Köln")
    assert raw.split(b"\r\n\r\n", 1)[0].isascii()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "Undelivered Mail Returned to Sender: Grüße aus Köln"
    human = next(iter(msg.iter_parts()))
    assert "Grüße aus Köln" in human.get_content()


def test_header_injection_is_flattened() -> None:
    raw = _build(original_subject="hi\r\nBcc: victim@x.test", original_sender="a@x.test\r\nX-Evil: 1")
    msg = _parse(raw)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg["Subject"] == "Undelivered Mail Returned to Sender: hi Bcc: victim@x.test"


def test_empty_subject_and_no_recipients() -> None:
    assert _parse(_build(original_subject=""))["Subject"] == "Undelivered Mail Returned to Sender"
    with pytest.raises(ValueError):
        _build(recipients=[])
