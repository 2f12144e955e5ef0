"""Pure helpers over a received message's bytes: Received trace header, subject, header edits."""

from __future__ import annotations

import binascii
import codecs
import datetime
import email.utils
import re
from email.header import Header

_SUBJECT = re.compile(rb"^subject:[ \t]*", re.IGNORECASE | re.MULTILINE)
_FIELD_END = re.compile(rb"\r?\n(?![ \t])")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
# RFC 2047 §2: =?charset?encoding?encoded-text?= (charset may carry an RFC 2231 *language).
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([BbQq])\?([^?\s]*)\?=")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# C0, DEL and C1 controls, and the lone surrogates that stand for bytes that were not UTF-8
# (aiosmtpd decodes command arguments with surrogateescape).
_COMMAND_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NOT_UTF8 = re.compile(r"[\udc80-\udcff]")
_BARE_NEWLINE = re.compile(rb"(?:\r(?!\n)|(?<!\r)\n)\.?")

# The queue's subject is a search and display field, not the message: a Subject longer than
# these is accepted as sent and its field is truncated (what Postfix's header_size_limit does to
# an over-long header), so a hostile header costs a bounded, linear amount of work.
SUBJECT_MAX_BYTES = 16 * 1024  # raw (folded) Subject bytes looked at
SUBJECT_MAX_WORDS = 128  # encoded words decoded
SUBJECT_MAX_CHARS = 1000  # characters kept
_ADDRESS = re.compile(r"^[^\s<>@\"]+@[^\s<>@\[\]]+\.?[^\s<>@\[\]]*$|^[^\s<>@]+@\[(?:[Ii][Pp][Vv]6:)?[0-9A-Fa-f:.]+\]$")


def split_headers(data: bytes) -> tuple[bytes, bytes]:
    """(header block including its final line break, the rest: blank line and body)."""
    # The first line break followed by an empty line (CRLF or bare LF): bytes.find, not a
    # regular expression, as this runs on the event loop over every message.
    crlf = data.find(b"\n\r\n")
    lf = data.find(b"\n\n", 0, len(data) if crlf == -1 else crlf)
    end = lf if lf != -1 else crlf
    if end == -1:
        return data, b""
    return data[:end + 1], data[end + 1:]


def subject_of(data: bytes) -> str:
    """The decoded Subject text (RFC 2047 words decoded), '' if none; bounded by the SUBJECT_MAX_*
    limits and linear in them, so it is cheap enough for the event loop whatever was sent."""
    head, _ = split_headers(data)
    match = _SUBJECT.search(head)
    if match is None:
        return ""
    raw = head[match.end():match.end() + SUBJECT_MAX_BYTES]
    end = _FIELD_END.search(raw)
    if end is not None:
        raw = raw[:end.start()]
    text = decode_words(_FOLD.sub(b"", raw).strip().decode("utf-8", errors="replace"))
    return _CONTROLS.sub("\ufffd", text.replace("\t", " "))[:SUBJECT_MAX_CHARS]


def decode_words(text: str, *, max_words: int = SUBJECT_MAX_WORDS) -> str:
    """RFC 2047 encoded words decoded in one pass; text after `max_words` words is dropped.

    Whitespace between two adjacent encoded words is not displayed (§6.2), and adjacent words in
    one charset are joined before decoding, so a character split across words survives. A word
    with an unknown charset or bad encoding stays as it was written.
    """
    out: list[str] = []
    pending: list[bytes] = []  # bytes of adjacent encoded words in `charset`
    charset = ""
    after_word = False  # the text so far ends with a decoded encoded word
    position = 0
    for count, word in enumerate(_ENCODED_WORD.finditer(text)):
        if count >= max_words:
            position = len(text)
            break
        gap = text[position:word.start()]
        decoded = _word_bytes(word.group(2), word.group(3))
        name = _codec(word.group(1))
        if decoded is None or name is None:
            _flush(out, pending, charset)
            out.append(gap + word.group(0))
            after_word = False
        else:
            joined = after_word and (not gap or gap.isspace())
            if not joined or name != charset:
                _flush(out, pending, charset)
                if not joined:
                    out.append(gap)
                charset = name
            pending.append(decoded)
            after_word = True
        position = word.end()
    _flush(out, pending, charset)
    out.append(text[position:])
    return "".join(out)


def _flush(out: list[str], pending: list[bytes], charset: str) -> None:
    if pending:
        out.append(b"".join(pending).decode(charset, errors="replace"))
        pending.clear()


def _codec(charset: str) -> str | None:
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return None


def _word_bytes(encoding: str, encoded: str) -> bytes | None:
    try:
        raw = encoded.encode("ascii")
    except UnicodeEncodeError:
        return None
    if encoding in "Bb":
        try:
            return binascii.a2b_base64(raw + b"=" * (-len(raw) % 4), strict_mode=True)
        except binascii.Error:
            return None
    # Q (§4.2): "_" is a space, =XX a byte
    return _Q_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), raw.replace(b"_", b" "))


def command_problem(argument: str) -> str | None:
    """Why a command argument (MAIL, RCPT, EHLO, HELO) is refused at the door, or None.

    RFC 5321 §4.1.2 builds paths and domains from printable characters only; a control byte
    has no place there, and an address holding one makes every later consumer (logs, the
    API's XML) a target. Non-UTF-8 bytes are refused too: there is no text to store.
    """
    if _COMMAND_CONTROLS.search(argument):
        return "control"
    if _NOT_UTF8.search(argument):
        return "utf8"
    return None


def has_bare_newline(data: bytes) -> bool:
    """A CR or LF that is not part of a CRLF pair (RFC 5321 §2.3.8 allows only CRLF)."""
    pairs = data.count(b"\r\n")
    return data.count(b"\n") != pairs or data.count(b"\r") != pairs


def crlf_lines(data: bytes) -> bytes:
    """`data` with every bare CR and bare LF made a CRLF line end. A line such an end starts
    loses one leading dot: the client took it for a line and dot-stuffed it (RFC 5321 §4.5.2),
    which aiosmtpd, reading CRLF lines only, did not undo."""
    return _BARE_NEWLINE.sub(b"\r\n", data)


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


_TRACE_ID = re.compile(rb"\bid ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b",
                       re.IGNORECASE)


def relayed_from(data: bytes) -> str:
    """The msgid another node of this product gave the message, from the newest Received
    header it wrote (`by HOST (appliance) ... id MSGID`), or ''. Linear in the header block."""
    head, _ = split_headers(data)
    for field in _FIELD_END.split(_FOLD.sub(b" ", head[:64 * 1024])):
        if field[:9].lower() == b"received:" and b"(appliance)" in field:
            match = _TRACE_ID.search(field)
            if match:
                return match.group(1).decode("ascii").lower()
    return ""


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
