"""WSGI middleware in front of Spyne: routing, credentials, request bodies, WSDL, page, gzip."""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import logging
import re
import zlib
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode
from xml.sax.saxutils import escape

from appliance.soap.app import PRINCIPAL_KEY
from appliance.soap.auth import Authenticator
from appliance.soap.calls import Principal

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

PATHS = ("/remote/", "/remote")
GZIP_MIN_BYTES = 512
# SOAP 1.1 forbids a DTD in a message (section 3); refusing it shuts out entity tricks early.
_DOCTYPE = re.compile(rb"<!\s*DOCTYPE", re.IGNORECASE)
_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


class RequestTooLarge(Exception):
    pass


class Gateway:
    """Everything HTTP about the SOAP endpoint, so the Spyne app sees only good, plain XML.

    `wsdl` is the interface document built once at start (appliance.soap.wsdl) for the public
    URL; `page` is the HTML shown on a plain GET.
    """

    def __init__(self, spyne_app: WsgiApp, *, authenticator: Authenticator, wsdl: bytes,
                 page: bytes, max_request_bytes: int,
                 wsdl_requires_auth: Callable[[], bool] = lambda: False) -> None:
        self._app = spyne_app
        # The WSDL is a public contract, the same on every node, and old clients (suds, WSDL
        # importers) fetch it anonymously on start; the config may require credentials for it.
        self._wsdl_requires_auth = wsdl_requires_auth
        self._auth = authenticator
        self.wsdl = wsdl
        self._page = page
        self._max = max_request_bytes

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") not in PATHS:
            return _plain(start_response, "404 Not Found", b"not found\n")
        query = _strip_credentials(environ)
        if (environ.get("REQUEST_METHOD") == "GET" and "wsdl" in {k.lower() for k in query}
                and not self._wsdl_requires_auth()):
            return self._respond(environ, start_response, "200 OK", self.wsdl,
                                 "text/xml; charset=utf-8")
        remote = str(environ.get("REMOTE_ADDR", ""))
        wait = self._auth.retry_after(remote)
        if wait:
            return _plain(start_response, "429 Too Many Requests",
                          b"too many failed logins; try again later\n",
                          [("Retry-After", str(int(wait) + 1))])
        principal = self._authenticate(environ, query, remote)
        if principal is None:
            return _plain(start_response, "401 Unauthorized", b"credentials required\n",
                          [("WWW-Authenticate", 'Basic realm="appliance"')])
        method = environ.get("REQUEST_METHOD", "")
        if method == "GET":
            wanted = {k.lower() for k in query}
            if "wsdl" in wanted:
                return self._respond(environ, start_response, "200 OK", self.wsdl,
                                     "text/xml; charset=utf-8")
            return self._respond(environ, start_response, "200 OK", self._page,
                                 "text/html; charset=utf-8")
        if method != "POST":
            return _plain(start_response, "405 Method Not Allowed", b"use GET or POST\n",
                          [("Allow", "GET, POST")])
        environ[PRINCIPAL_KEY] = principal
        return self._soap(environ, start_response)

    def _authenticate(self, environ: dict[str, Any], query: dict[str, str],
                      remote: str) -> Principal | None:
        name, password = _basic(environ.get("HTTP_AUTHORIZATION", ""))
        if name is None and "username" in query:
            name, password = query["username"], query.get("password", "")
        if not name:
            return None
        found = self._auth.check(name, password or "", remote)
        if found is None:
            log.warning("failed login for %r from %s", name, remote)
            return None
        return Principal(user=found[0], level=found[1], remote=remote, password=password or "")

    def _soap(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            body = self._read_body(environ)
        except RequestTooLarge:
            return _plain(start_response, "413 Payload Too Large",
                          f"request larger than {self._max} bytes\n".encode())
        except (OSError, zlib.error, EOFError, ValueError) as exc:
            return self._fault(environ, start_response, f"could not read the request: {exc}")
        if _DOCTYPE.search(body):
            return self._fault(environ, start_response, "a DOCTYPE is not allowed in SOAP messages")
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_CONTENT_ENCODING", None)
        if not environ.get("CONTENT_TYPE"):
            environ["CONTENT_TYPE"] = "text/xml; charset=utf-8"  # Spyne insists on one
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        try:
            result = self._app(environ, capture)
            try:
                out = b"".join(result)
            finally:
                getattr(result, "close", lambda: None)()
        except Exception as exc:  # Spyne lets some decoding errors (bad base64) escape
            log.info("unreadable SOAP request from %s: %s", environ.get("REMOTE_ADDR"),
                     type(exc).__name__)
            return self._fault(environ, start_response, f"could not read the request: {exc}")
        status = captured.get("status", "500 Internal Server Error")
        if status.startswith("500") and not out:
            return self._fault(environ, start_response, "could not read the request")
        ctype = dict((k.lower(), v) for k, v in captured.get("headers", [])).get(
            "content-type", "text/xml; charset=utf-8")
        return self._respond(environ, start_response, status, out, ctype)

    def _read_body(self, environ: dict[str, Any]) -> bytes:
        length = environ.get("CONTENT_LENGTH") or ""
        if length.isdigit() and int(length) > self._max:
            raise RequestTooLarge
        stream = environ["wsgi.input"]
        chunks, total = [], 0
        remaining = int(length) if length.isdigit() else None
        while remaining is None or remaining > 0:
            chunk = stream.read(65536 if remaining is None else min(65536, remaining))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if remaining is not None:
                remaining -= len(chunk)
            if total > self._max:
                raise RequestTooLarge
        raw = b"".join(chunks)
        encoding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
        if encoding in ("", "identity"):
            return raw
        if encoding in ("gzip", "x-gzip", "deflate"):
            body = _inflate(raw, self._max)
            log.debug("%s request body: %d -> %d bytes", encoding, len(raw), len(body))
            return body
        raise ValueError(f"unsupported Content-Encoding {encoding!r}")

    def _fault(self, environ: dict[str, Any], start_response: StartResponse,
               text: str) -> Iterable[bytes]:
        return self._respond(environ, start_response, "500 Internal Server Error",
                             fault_envelope("Client", text), "text/xml; charset=utf-8")

    def _respond(self, environ: dict[str, Any], start_response: StartResponse, status: str,
                 body: bytes, ctype: str) -> Iterable[bytes]:
        headers = [("Content-Type", ctype), ("Vary", "Accept-Encoding")]
        if len(body) >= GZIP_MIN_BYTES and _accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", "")):
            body = gzip.compress(body, compresslevel=5)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]


def fault_envelope(code: str, text: str) -> bytes:
    return (
        f"<?xml version='1.0' encoding='UTF-8'?>\n"
        f'<soap11env:Envelope xmlns:soap11env="{_SOAP_ENV}"><soap11env:Body>'
        f"<soap11env:Fault><faultcode>soap11env:{escape(code)}</faultcode>"
        f"<faultstring>{escape(text[:1000])}</faultstring></soap11env:Fault>"
        f"</soap11env:Body></soap11env:Envelope>"
    ).encode()


def _inflate(raw: bytes, cap: int) -> bytes:
    """gzip or zlib bodies (wbits 47 detects either), raw deflate as a fallback; at most `cap`."""
    try:
        decoder = zlib.decompressobj(47)
        out = decoder.decompress(raw, cap + 1)
    except zlib.error:
        decoder = zlib.decompressobj(-15)
        out = decoder.decompress(raw, cap + 1)
    if len(out) > cap or decoder.unconsumed_tail:
        raise RequestTooLarge
    return out


def _strip_credentials(environ: dict[str, Any]) -> dict[str, str]:
    """The query as a dict; `username`/`password` are removed from the environ so nothing logs them."""
    pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if k not in ("username", "password")]
    if len(kept) != len(pairs):
        environ["QUERY_STRING"] = urlencode(kept)
    return dict(pairs)


def _basic(header: str) -> tuple[str | None, str | None]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else (None, None)


def _accepts_gzip(header: str) -> bool:
    for part in header.lower().split(","):
        token, _, params = part.strip().partition(";")
        if token.strip() in ("gzip", "x-gzip", "*"):
            q = params.strip()
            return not (q.startswith("q=") and _float(q[2:]) == 0.0)
    return False


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 1.0


def _plain(start_response: StartResponse, status: str, body: bytes,
           extra: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(status, headers + (extra or []))
    return [body]
