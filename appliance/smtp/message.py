"""Pure helpers over a received message's bytes: Received trace header, subject, header edits."""

from __future__ import annotations

import datetime
import email.utils
import re
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_SUBJECT = re.compile(rb"^subject:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_ADDRESS = re.compile(r"^[^\s<>@\"]+@[^\s<>@\[\]]+\.?[^\s<>@\[\]]*$|^[^\s<>@]+@\[[0-9A-Fa-f:.]+\]$")


def split_headers(data: bytes) -> tuple[bytes, bytes]:
    """(header block including its final line break, the rest: blank line and body)."""
    match = _HEADER_END.search(data)
    if match is None:
        return data, b""
    cut = match.start() + (2 if data[match.start():match.start() + 2] == b"\r\n" else 1)
    return data[:cut], data[cut:]


def subject_of(data: bytes) -> str:
    """The decoded Subject text (RFC 2047 words decoded), '' if none or undecodable."""
    head, _ = split_headers(data)
    match = _SUBJECT.search(head)
    if match is None:
        return ""
    raw = re.sub(rb"\r?\n(?=[ \t])", b"", match.group(1)).strip()
    text = raw.decode("utf-8", errors="replace")
    try:
        return str(make_header(decode_header(text)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return text


def is_address(address: str) -> bool:
    """A plausible RFC 5321 mailbox: local@domain, no spaces or angle brackets."""
    return len(address) <= 320 and _ADDRESS.match(address) is not None


def received_header(
    *, helo: str, client_ip: str, hostname: str, protocol: str, msgid: str,
    recipients: tuple[str, ...], when: float,
) -> bytes:
    """An RFC 5321 §4.4 trace header; `for` names the recipient only when there is one."""
    ip = f"IPv6:{client_ip}" if ":" in client_ip else client_ip
    helo = "".join(ch for ch in helo if 32 < ord(ch) < 127)[:255] or "unknown"
    parts = [f"from {helo} ([{ip}])", f"by {hostname} (appliance)", f"with {protocol}", f"id {msgid}"]
    if len(recipients) == 1:
        parts.append(f"for <{recipients[0]}>")
    value = "\r\n\t".join(parts) + "; " + email.utils.format_datetime(
        datetime.datetime.fromtimestamp(when, datetime.timezone.utc))
    return f"Received: {value}\r\n".encode("utf-8", errors="replace")


def protocol_name(*, esmtp: bool, tls: bool, authenticated: bool) -> str:
    """The `with` keyword of RFC 3848: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA."""
    if not esmtp:
        return "SMTP"
    return "ESMTP" + ("S" if tls else "") + ("A" if authenticated else "")


def edit_headers(data: bytes, *, add: list[tuple[str, str]], remove: list[str]) -> bytes:
    """Remove every field named in `remove` (with its continuation lines), then prepend `add`."""
    if not add and not remove:
        return data
    head, rest = split_headers(data)
    if remove:
        names = {name.lower().encode() for name in remove}
        kept: list[bytes] = []
        dropping = False
        for line in head.splitlines(keepends=True):
            if line[:1] in (b" ", b"\t"):
                if not dropping:
                    kept.append(line)
                continue
            name = line.split(b":", 1)[0].strip().lower()
            dropping = name in names
            if not dropping:
                kept.append(line)
        head = b"".join(kept)
    added = b"".join(_field(name, value) for name, value in add)
    return added + head + rest


def _field(name: str, value: str) -> bytes:
    if not re.fullmatch(r"[!-9;-~]+", name):
        raise ValueError(f"invalid header name {name!r}")
    value = " ".join(value.splitlines())
    if value.isascii():
        return f"{name}: {value}\r\n".encode("ascii")
    return f"{name}: {Header(value, 'utf-8', header_name=name).encode()}\r\n".encode("ascii")
