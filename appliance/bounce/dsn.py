"""RFC 3464 delivery status notifications (bounces), built as bytes without I/O."""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import os
import quopri
import re
import uuid
from collections.abc import Sequence
from email.header import Header

_CRLF = b"\r\n"
_SMTP_REPLY = re.compile(r"^[245]\d\d[ -]")
_MAX_FIELD = 900  # RFC 5322 section 2.1.1: lines of at most 998 characters


@dataclasses.dataclass(frozen=True, kw_only=True)
class FailedRecipient:
    """One recipient's per-recipient fields (RFC 3464 section 2.3)."""

    recipient: str
    status: str  # RFC 3463 code, e.g. 5.1.1
    diagnostic: str  # the remote reply ("550 5.1.1 no such user") or a local reason
    action: str = "failed"
    remote_mta: str = ""
    last_attempt: float | None = None
    queueid: int | None = None


def build_dsn(
    *,
    hostname: str,
    original_sender: str,
    original_headers: bytes,
    original_subject: str,
    arrival: float,
    now: float,
    recipients: Sequence[FailedRecipient],
    original_msgid: str = "",
    message_id: str | None = None,
) -> bytes:
    """A multipart/report; report-type=delivery-status message to the original sender.

    Sent with the null reverse-path by the caller (RFC 3464 section 2, RFC 5321 section 4.5.5),
    so that a failing bounce is never bounced again.
    """
    if not recipients:
        raise ValueError("a DSN needs at least one recipient")
    boundary = f"=_dsn_{os.urandom(16).hex()}"
    msg_id = message_id or f"<{uuid.uuid4()}@{_clean(hostname)}>"
    head = _top_headers(hostname, original_sender, original_subject, now, msg_id, boundary)
    parts = [
        _human_part(hostname, original_subject, recipients),
        _status_part(hostname, original_msgid, arrival, recipients),
        _headers_part(original_headers),
    ]
    body = b"This is a MIME-encapsulated message." + _CRLF + _CRLF
    for part in parts:
        body += b"--" + boundary.encode() + _CRLF + part + _CRLF
    body += b"--" + boundary.encode() + b"--" + _CRLF
    return head + _CRLF + body


def subject_line(original_subject: str) -> str:
    subject = _clean(original_subject)
    return f"Undelivered Mail Returned to Sender: {subject}" if subject else "Undelivered Mail Returned to Sender"


def _top_headers(
    hostname: str, sender: str, subject: str, now: float, msg_id: str, boundary: str
) -> bytes:
    host = _clean(hostname)
    subj = subject_line(subject)
    if not subj.isascii():  # RFC 2047 encoded-words
        subj = Header(subj, "utf-8", header_name="Subject").encode(linesep="\r\n")
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>",
        f"To: <{_clean(sender)}>",
        f"Subject: {subj}",
        f"Date: {_date(now)}",
        f"Message-ID: {msg_id}",
        "MIME-Version: 1.0",
        "Auto-Submitted: auto-replied",  # RFC 3834 section 5
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    return "\r\n".join(lines).encode("ascii") + _CRLF


def _human_part(hostname: str, subject: str, recipients: Sequence[FailedRecipient]) -> bytes:
    text = [
        f"This is the mail system at host {_clean(hostname)}.",
        "",
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients.",
        "",
        f"Subject: {_clean(subject)}" if subject else "",
        "",
    ]
    for r in recipients:
        text.append(f"<{_clean(r.recipient)}>: {_clean(r.diagnostic)}")
    body = "\r\n".join(text).encode("utf-8") + _CRLF
    if body.isascii():
        head = b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n"
    else:
        head = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
        body = quopri.encodestring(body).replace(b"\r\n", b"\n").replace(b"\n", _CRLF)
    return head + b"Content-Description: Notification" + _CRLF + _CRLF + body


def _status_part(
    hostname: str, msgid: str, arrival: float, recipients: Sequence[FailedRecipient]
) -> bytes:
    # RFC 3464 section 2.2: per-message fields, then one block per recipient (2.3),
    # each block separated by an empty line.
    blocks = [[f"Reporting-MTA: dns; {_clean(hostname)}"]]
    if msgid:
        blocks[0].append(f"X-Appliance-Msgid: {_clean(msgid)}")
    blocks[0].append(f"Arrival-Date: {_date(arrival)}")
    for r in recipients:
        block = [
            f"Final-Recipient: rfc822; {_clean(r.recipient)}",
            f"Action: {r.action}",
            f"Status: {r.status}",
        ]
        if r.remote_mta:
            block.append(f"Remote-MTA: dns; {_clean(r.remote_mta)}")
        block.append(f"Diagnostic-Code: {_diagnostic(r.diagnostic)}")
        if r.last_attempt is not None:
            block.append(f"Last-Attempt-Date: {_date(r.last_attempt)}")
        if r.queueid is not None:
            block.append(f"X-Appliance-Queue-ID: {r.queueid}")
        blocks.append(block)
    text = "\r\n\r\n".join("\r\n".join(b) for b in blocks)
    head = b"Content-Type: message/delivery-status\r\nContent-Description: Delivery report\r\n"
    return head + _CRLF + text.encode("utf-8") + _CRLF


def _headers_part(original_headers: bytes) -> bytes:
    headers = re.sub(rb"\r?\n", _CRLF, original_headers).rstrip(_CRLF) + _CRLF
    head = b"Content-Type: text/rfc822-headers\r\nContent-Description: Undelivered Message Headers\r\n"
    return head + _CRLF + headers


@functools.lru_cache(maxsize=1024)
def _date(when: float) -> str:
    """RFC 5322 date of a timestamp (a bulk bounce's DSNs share `now`: formatted once)."""
    return email.utils.formatdate(when, usegmt=True)


def _diagnostic(text: str) -> str:
    """RFC 3464 section 2.3.6: 'smtp' for a remote SMTP reply, otherwise a local type."""
    clean = _clean(text)
    kind = "smtp" if _SMTP_REPLY.match(clean) else "X-Appliance"
    return f"{kind}; {clean}"


@functools.lru_cache(maxsize=4096)  # a DSN cleans its host name four times, a bulk bounce
def _clean(value: str) -> str:  # the same reason and host in every DSN
    """One header-safe line: no CR/LF (header injection), bounded length."""
    if value.isprintable() and "  " not in value and value[:1] != " " and value[-1:] != " " \
            and len(value) <= _MAX_FIELD:
        return value  # already one line with single spaces (printable: no other whitespace)
    flat = " ".join(value.replace("\r", " ").replace("\n", " ").split())
    return flat[:_MAX_FIELD]
