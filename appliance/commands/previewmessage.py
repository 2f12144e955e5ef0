"""`previewmessage [-t] MSGPATH MARK [DELTAPATH]`: a message's headers, bodies and attachment list.

Output: the header fields (RFC 2047 words decoded, one line each), then the sections
`MARK|TEXT` (the text/plain body), `MARK|HTML` (the text/html body) and `MARK|ATTACHMENTS`
(one `type|size|name` line per other part; size is decoded bytes). Every section is always
present, empty when the message has no such part. Bodies are decoded from their transfer
encoding and charset by the email package. With -t the text part is preferred: when the
message has a text/plain body the HTML section stays empty.

DELTAPATH names a spool file holding a header block (RFC 5322 section 2.2 fields) of changes
to show instead of the stored ones, as a policy script's header edits would make them: each
field in it replaces every field of that name (a field with an empty value removes them, a
field the message lacks is added). Both paths go through Spool.resolve, so neither can name a
file outside the spool.
"""

from __future__ import annotations

import dataclasses
import email
import email.message
import email.policy
import re
from collections.abc import Iterator, Sequence
from typing import Any

from appliance.commands.base import ArgvParser, CommandContext, CommandSpec, Terminal
from appliance.errors import InvalidInput
from appliance.nodelog import escape

MAX_MESSAGE = 64 * 1024 * 1024
_MARK = re.compile(r"^[A-Za-z0-9_.:=+-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class Args:
    msgpath: str
    mark: str
    deltapath: str | None
    prefer_text: bool


def parse(argv: Sequence[str]) -> Args:
    p = ArgvParser("previewmessage")
    p.add_argument("-t", dest="prefer_text", action="store_true")
    p.add_argument("msgpath", metavar="MSGPATH")
    p.add_argument("mark", metavar="MARK")
    p.add_argument("deltapath", nargs="?", metavar="DELTAPATH")
    ns = p.parse_argv(argv)
    if not _MARK.match(ns.mark):
        p.error("MARK must be 1-64 letters, digits or _.:=+- (no spaces or |)")
    return Args(msgpath=ns.msgpath, mark=ns.mark, deltapath=ns.deltapath, prefer_text=ns.prefer_text)


def load(data: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def apply_delta(msg: email.message.EmailMessage, delta: bytes) -> None:
    """Replace, add or remove header fields as the delta's header block says."""
    changes = load(delta)  # only its header block matters
    names: dict[str, str] = {}
    for key in changes.keys():
        names.setdefault(key.lower(), key)  # in order; the first spelling wins
    for name in names.values():
        values = [v for v in changes.get_all(name, []) if str(v).strip()]
        del msg[name]
        for value in values:
            msg[name] = str(value)


def preview(msg: email.message.EmailMessage, mark: str, *, prefer_text: bool) -> Iterator[str]:
    """The preview's lines (each ending in a newline)."""
    for name, value in msg.items():
        yield f"{name}: {escape(_header_text(value))}\n"
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    yield f"{mark}|TEXT\n"
    if plain is not None:
        yield _lines(_text(plain))
    yield f"{mark}|HTML\n"
    if html is not None and not (prefer_text and plain is not None):
        yield _lines(_text(html))
    yield f"{mark}|ATTACHMENTS\n"
    bodies = [b for b in (plain, html) if b is not None]
    for part in _leaves(msg):
        if not any(part is b for b in bodies):
            name = escape(part.get_filename() or "")
            yield f"{part.get_content_type()}|{_size(part)}|{name}\n"


def _header_text(value: Any) -> str:
    try:
        return " ".join(str(value).split())  # unfold (RFC 5322 section 2.2.3)
    except Exception:  # a malformed header must not hide the rest of the preview
        return repr(value)


def _text(part: email.message.MIMEPart) -> str:
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, ValueError):  # unknown or lying charset
        raw = part.get_payload(decode=True)
        content = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
    return content if isinstance(content, str) else ""


def _lines(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def _leaves(part: email.message.MIMEPart) -> Iterator[email.message.MIMEPart]:
    """Non-multipart parts in order; an attached message (message/rfc822) is one leaf."""
    if part.get_content_type() == "message/rfc822" or not part.is_multipart():
        if part.get_content_maintype() != "multipart":
            yield part
        return
    for sub in part.iter_parts():
        yield from _leaves(sub)


def _size(part: email.message.MIMEPart) -> int:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload(0)
        return len(inner.as_bytes()) if isinstance(inner, email.message.Message) else 0
    data = part.get_payload(decode=True)
    return len(data) if isinstance(data, bytes) else 0


def run(ctx: CommandContext, args: Args, term: Terminal) -> None:
    spool = ctx.need("spool")
    path = spool.resolve(args.msgpath)
    if path.stat().st_size > MAX_MESSAGE:
        raise InvalidInput(f"message is larger than {MAX_MESSAGE} bytes; use fileRead")
    msg = load(path.read_bytes())
    if args.deltapath is not None:
        apply_delta(msg, spool.read(args.deltapath))
    for line in preview(msg, args.mark, prefer_text=args.prefer_text):
        term.write(line)


def names(args: Args) -> list[tuple[str, str]]:
    return [("path", p) for p in (args.msgpath, args.deltapath) if p is not None]


SPEC = CommandSpec(
    name="previewmessage",
    usage="previewmessage [-t] MSGPATH MARK [DELTAPATH]",
    description="Headers, then MARK|TEXT, MARK|HTML and MARK|ATTACHMENTS (type|size|name) of a "
    "spool message; -t prefers the text body; DELTAPATH: a spool file of header changes to apply",
    parse=parse,
    run=run,
    reads_only=True,
    names=names,
)
