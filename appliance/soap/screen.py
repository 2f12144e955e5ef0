"""Checks on a SOAP POST before Spyne sees it: CSRF, operation, encoding, element counts."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from lxml import etree
from spyne import ByteArray

_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
SOAP_TYPES = ("text/xml", "application/soap+xml")
_UTF8 = ("utf-8", "utf8", "us-ascii", "ascii")
# SOAP 1.1 forbids a DTD in a message (section 3); refusing it shuts out entity tricks early.
_DOCTYPE = re.compile(rb"<!\s*DOCTYPE", re.IGNORECASE)
_XML_DECL = re.compile(rb"^<\?xml\s[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']")
# Configuration text, scripts and files: the operations that may carry a large body.
_LARGE_BY_NAME = frozenset({"configTextSet", "configTest", "configKeySet"})
_PEEK_BYTES = 64 * 1024


class Refused(Exception):
    """The request is refused; `status` is the HTTP status, the text says why."""

    def __init__(self, text: str, *, status: str = "") -> None:
        super().__init__(text)
        self.status = status  # "" = a SOAP Client fault


@dataclasses.dataclass(frozen=True)
class Operations:
    """What the gateway knows of each operation before deserializing: mutating, large."""

    mutating: dict[str, bool]
    large: frozenset[str]

    @classmethod
    def of(cls, app: Any) -> Operations:
        mutating: dict[str, bool] = {}
        large = set()
        for service in app.services:
            for name, descriptor in service.public_methods.items():
                mutating[name] = bool(descriptor.udd.mutating)
                if name in _LARGE_BY_NAME or _carries_bytes(descriptor.in_message):
                    large.add(name)
        return cls(mutating=mutating, large=frozenset(large))


def check_csrf(environ: dict[str, Any], public_url: str) -> None:
    """A browser form or a simple fetch() cannot set these (no CORS preflight is answered):
    a SOAP content type, a SOAPAction header (SOAP 1.1 section 6.1.1) and no foreign Origin."""
    ctype, params = media_type(environ.get("CONTENT_TYPE", ""))
    if ctype not in SOAP_TYPES:
        raise Refused("a SOAP request needs Content-Type text/xml or application/soap+xml",
                      status="415 Unsupported Media Type")
    if "HTTP_SOAPACTION" not in environ and not (ctype == SOAP_TYPES[1] and "action" in params):
        raise Refused("a SOAP 1.1 request needs a SOAPAction header", status="400 Bad Request")
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and origin not in _own_origins(environ, public_url):
        raise Refused(f"requests from origin {origin[:200]!r} are not accepted",
                      status="403 Forbidden")


def action_operation(environ: dict[str, Any]) -> str:
    """The operation a SOAPAction (or SOAP 1.2 action parameter) names; "" when it names none."""
    action = environ.get("HTTP_SOAPACTION")
    if action is None:
        action = media_type(environ.get("CONTENT_TYPE", ""))[1].get("action", "")
    action = action.strip().strip('"').strip()
    return re.split(r"[#/:]", action)[-1] if action else ""


def check_encoding(body: bytes, content_type: str) -> None:
    """Only UTF-8 (or ASCII) bodies: any other encoding (a UTF-16/32 BOM or declaration,
    EBCDIC as cp500) would hide a DOCTYPE from a byte-level check and is refused outright."""
    charset = media_type(content_type)[1].get("charset", "utf-8").lower()
    if charset not in _UTF8:
        raise Refused(f"charset {charset[:40]!r} is not accepted: send UTF-8")
    start = body[3:] if body.startswith(b"\xef\xbb\xbf") else body
    start = start.lstrip(b" \t\r\n")
    if start and not start.startswith(b"<"):  # a UTF-16/32 BOM, EBCDIC, or no XML at all
        raise Refused("the request is not UTF-8 XML")
    if b"\x00" in body:  # never in XML 1.0 text; UTF-16/32 without a BOM has plenty
        raise Refused("the request is not UTF-8 XML")
    declared = _XML_DECL.match(start)
    if declared and declared.group(1).decode().lower() not in _UTF8:
        raise Refused(f"encoding {declared.group(1).decode()[:40]!r} is not accepted: send UTF-8")
    if _DOCTYPE.search(body):
        raise Refused("a DOCTYPE is not allowed in SOAP messages")


def peek_operation(chunks: Iterator[bytes]) -> str:
    """The local name of the Body's first element, reading only as far as it (streaming)."""
    parser = _parser(("start",))
    try:
        for chunk in chunks:
            parser.feed(chunk)
            for _, element in parser.read_events():
                parent = element.getparent()
                if parent is not None and _is_body(parent.tag):
                    return _local(element)
    except etree.XMLSyntaxError:
        return ""
    return ""


def scan(body: bytes, *, max_items: int) -> str:
    """Stream over the whole body once: no element may have more than `max_items` children
    (every array is bounded before Spyne builds objects for it). Returns the operation."""
    parser = _parser(("start", "end"))
    children: list[int] = [0]
    operation = ""
    view = memoryview(body)
    try:
        for at in range(0, len(body), _PEEK_BYTES):
            parser.feed(bytes(view[at:at + _PEEK_BYTES]))
            for event, element in parser.read_events():
                if event == "start":
                    children[-1] += 1
                    if children[-1] > max_items:
                        raise Refused(f"more than {max_items} items in <{_local(element)}>'s "
                                      f"parent: the node accepts at most {max_items} per array")
                    children.append(0)
                    parent = element.getparent()
                    if not operation and parent is not None and _is_body(parent.tag):
                        operation = _local(element)
                else:
                    children.pop()
                    element.clear(keep_tail=False)  # keeps memory flat over large arrays
        parser.close()
    except etree.XMLSyntaxError:
        return operation  # Spyne answers malformed XML with its own Client fault
    return operation


def media_type(header: str) -> tuple[str, dict[str, str]]:
    kind, *rest = header.split(";")
    params = {}
    for part in rest:
        key, _, value = part.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return kind.strip().lower(), params


def _own_origins(environ: dict[str, Any], public_url: str) -> set[str]:
    scheme = environ.get("wsgi.url_scheme", "http")
    origins = {f"{scheme}://{environ.get('HTTP_HOST', '')}"}
    if public_url:
        parts = urlsplit(public_url)
        origins.add(f"{parts.scheme}://{parts.netloc}")
    return origins


def _parser(events: tuple[str, ...]) -> Any:
    return etree.XMLPullParser(events=events, resolve_entities=False, load_dtd=False,
                               no_network=True, huge_tree=False, remove_comments=True)


def _is_body(tag: Any) -> bool:
    return isinstance(tag, str) and tag in (f"{{{_SOAP_ENV}}}Body", f"{{{_SOAP12_ENV}}}Body")


def _local(element: Any) -> str:
    tag = element.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _carries_bytes(model: Any, depth: int = 0) -> bool:
    if isinstance(model, type) and issubclass(model, ByteArray):
        return True
    info: Any = getattr(model, "_type_info", None) or {}
    return depth < 6 and any(_carries_bytes(t, depth + 1) for t in info.values())
