"""WSGI middleware in front of Spyne: routing, CSRF, credentials, access, bodies, WSDL, gzip."""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode
from xml.sax.saxutils import escape

from appliance.errors import ApplianceError
from appliance.soap import faults
from appliance.soap.app import PRINCIPAL_KEY
from appliance.soap.auth import Authenticator, basic_credentials
from appliance.soap.calls import Principal
from appliance.soap.screen import (
    Operations, Refused, action_operation, check_csrf, check_encoding, peek_operation, scan,
)

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

PATHS = ("/remote/", "/remote")
GZIP_MIN_BYTES = 512
_PEEK = 64 * 1024  # inflated bytes read to find the operation when SOAPAction is empty
_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
# The operations page is static: it needs no script, frame or form, and must not be framed
# (clickjacking) nor sniffed into another type.
PAGE_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; "
     "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
]
Precheck = Callable[[Principal, str], ApplianceError | None]


class RequestTooLarge(Exception):
    pass


class Gateway:
    """Everything HTTP about the SOAP endpoint, so the Spyne app sees only good, plain XML.

    `wsdl` is the interface document built once at start (appliance.soap.wsdl) for the public
    URL; `page` is the HTML shown on a plain GET. Before any body is inflated or parsed, the
    caller is authenticated and `precheck` decides whether it may call the operation the
    SOAPAction (or the Body's first element) names; the inflated body is capped per operation
    (`max_operation_bytes` unless it carries files or text) and every array per `max_array_items`.
    """

    def __init__(self, spyne_app: WsgiApp, *, authenticator: Authenticator, wsdl: bytes,
                 page: bytes, max_request_bytes: int, max_operation_bytes: int | None = None,
                 max_array_items: int = 10_000, precheck: Precheck | None = None,
                 operations: Operations | None = None, public_url: str = "",
                 wsdl_requires_auth: Callable[[], bool] = lambda: False) -> None:
        self._app = spyne_app
        # The WSDL is a public contract, the same on every node, and old clients (suds, WSDL
        # importers) fetch it anonymously on start; the config may require credentials for it.
        self._wsdl_requires_auth = wsdl_requires_auth
        self._auth = authenticator
        self.wsdl = wsdl
        self._page = page
        self._max = max_request_bytes
        self._op_max = min(max_operation_bytes or max_request_bytes, max_request_bytes)
        self._max_items = max_array_items
        self._precheck = precheck
        spyne = getattr(spyne_app, "app", None)
        self._ops = operations or (Operations.of(spyne) if spyne is not None else None)
        self.public_url = public_url

    @property
    def mutating(self) -> dict[str, bool]:
        """Operation name -> whether it is mutating (audited, refused to readonly users)."""
        return dict(self._ops.mutating) if self._ops is not None else {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") not in PATHS:
            return _plain(start_response, "404 Not Found", b"not found\n")
        query = _strip_credentials(environ)
        if (environ.get("REQUEST_METHOD") == "GET" and "wsdl" in {k.lower() for k in query}
                and not self._wsdl_requires_auth()):
            return self._respond(environ, start_response, "200 OK", self.wsdl,
                                 "text/xml; charset=utf-8")
        method = environ.get("REQUEST_METHOD", "")
        if method == "POST":
            try:  # before credentials: a forged cross-site POST is refused whatever it carries
                check_csrf(environ, self.public_url)
            except Refused as refused:
                return _plain(start_response, refused.status, f"{refused}\n".encode())
        remote = str(environ.get("REMOTE_ADDR", ""))
        name, password = basic_credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if name is None and "username" in query:
            name, password = query["username"], query.get("password", "")
        if not name:
            return _unauthorized(start_response)
        login = self._auth.check(name, password or "", remote)
        if login.retry_after:
            return _plain(start_response, "429 Too Many Requests",
                          b"too many failed logins; try again later\n",
                          [("Retry-After", str(int(login.retry_after) + 1))])
        if login.level is None:
            log.warning("failed login for %r from %s", name, remote)
            return _unauthorized(start_response)
        principal = Principal(user=login.user, level=login.level, remote=remote,
                              password=password or "")
        if method == "GET":
            wanted = {k.lower() for k in query}
            if "wsdl" in wanted:
                return self._respond(environ, start_response, "200 OK", self.wsdl,
                                     "text/xml; charset=utf-8")
            return self._respond(environ, start_response, "200 OK", self._page,
                                 "text/html; charset=utf-8", PAGE_HEADERS)
        if method != "POST":
            return _plain(start_response, "405 Method Not Allowed", b"use GET or POST\n",
                          [("Allow", "GET, POST")])
        environ[PRINCIPAL_KEY] = principal
        return self._soap(environ, start_response, principal)

    def _soap(self, environ: dict[str, Any], start_response: StartResponse,
              principal: Principal) -> Iterable[bytes]:
        operation = action_operation(environ)
        try:
            if operation:  # named by SOAPAction: refused before a byte of the body is read
                self._admit(principal, operation)
            raw = self._read_raw(environ, self._cap(operation) if operation else self._max)
            coding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
            if not operation:  # SOAPAction "": the Body's first element, by a streaming peek
                head = _decode(raw, coding, _PEEK, partial=True)
                check_encoding(head, environ.get("CONTENT_TYPE", ""))
                operation = peek_operation(iter([head]))
                self._admit(principal, operation)
            body = _decode(raw, coding, self._cap(operation))
            if body is not raw:
                log.debug("%s request body: %d -> %d bytes", coding, len(raw), len(body))
            check_encoding(body, environ.get("CONTENT_TYPE", ""))
            called = scan(body, max_items=self._max_items)
        except RequestTooLarge:
            cap = self._cap(operation) if operation else self._max
            return _plain(start_response, "413 Payload Too Large",
                          f"request larger than {cap} bytes\n".encode())
        except Refused as refused:
            return self._fault(environ, start_response, str(refused))
        except ApplianceError as exc:
            return self._fault(environ, start_response, str(exc), code=fault_code(exc))
        except (OSError, zlib.error, EOFError, ValueError) as exc:
            return self._fault(environ, start_response, f"could not read the request: {exc}")
        if called and called != operation:
            return self._fault(environ, start_response,
                               f"SOAPAction names {operation} but the body calls {called}")
        return self._spyne(environ, start_response, body)

    def _admit(self, principal: Principal, operation: str) -> None:
        if self._ops is None:
            return
        if operation not in self._ops.mutating:
            raise Refused(f"no such operation: {operation[:100]!r}")
        refusal = self._precheck(principal, operation) if self._precheck else None
        if refusal is not None:
            raise refusal

    def _cap(self, operation: str) -> int:
        large = self._ops is None or operation in self._ops.large
        return self._max if large else self._op_max

    def _spyne(self, environ: dict[str, Any], start_response: StartResponse,
               body: bytes) -> Iterable[bytes]:
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_CONTENT_ENCODING", None)
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

    def _read_raw(self, environ: dict[str, Any], cap: int) -> bytes:
        length = environ.get("CONTENT_LENGTH") or ""
        if length.isdigit() and int(length) > cap:
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
            if total > cap:
                raise RequestTooLarge
        return b"".join(chunks)

    def _fault(self, environ: dict[str, Any], start_response: StartResponse,
               text: str, *, code: str = "Client") -> Iterable[bytes]:
        return self._respond(environ, start_response, "500 Internal Server Error",
                             fault_envelope(code, text), "text/xml; charset=utf-8")

    def _respond(self, environ: dict[str, Any], start_response: StartResponse, status: str,
                 body: bytes, ctype: str,
                 extra: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
        headers = [("Content-Type", ctype), ("Vary", "Accept-Encoding"),
                   ("X-Content-Type-Options", "nosniff"), *(extra or [])]
        if len(body) >= GZIP_MIN_BYTES and _accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", "")):
            body = gzip.compress(body, compresslevel=5)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]


def fault_code(exc: ApplianceError) -> str:
    """The faultcode of the one fault table (appliance.soap.faults) for a domain error."""
    return next(code for cls, code in faults.FAULT_CODES if isinstance(exc, cls))


def fault_envelope(code: str, text: str) -> bytes:
    return (
        f"<?xml version='1.0' encoding='UTF-8'?>\n"
        f'<soap11env:Envelope xmlns:soap11env="{_SOAP_ENV}"><soap11env:Body>'
        f"<soap11env:Fault><faultcode>soap11env:{escape(code)}</faultcode>"
        f"<faultstring>{escape(text[:1000])}</faultstring></soap11env:Fault>"
        f"</soap11env:Body></soap11env:Envelope>"
    ).encode()


def _decode(raw: bytes, coding: str, cap: int, *, partial: bool = False) -> bytes:
    """The body as sent (Content-Encoding undone), at most `cap` bytes (`partial`: the first
    `cap` bytes, for a peek, instead of RequestTooLarge)."""
    if coding in ("", "identity"):
        if len(raw) > cap and not partial:
            raise RequestTooLarge
        return raw[:cap]
    if coding in ("gzip", "x-gzip", "deflate"):
        return _inflate(raw, cap, partial=partial)
    raise ValueError(f"unsupported Content-Encoding {coding!r}")


def _inflate(raw: bytes, cap: int, *, partial: bool = False) -> bytes:
    """gzip or zlib bodies (wbits 47 detects either), raw deflate as a fallback; at most `cap`."""
    try:
        decoder = zlib.decompressobj(47)
        out = decoder.decompress(raw, cap + 1)
    except zlib.error:
        decoder = zlib.decompressobj(-15)
        out = decoder.decompress(raw, cap + 1)
    if partial:
        return out[:cap]
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


def _unauthorized(start_response: StartResponse) -> Iterable[bytes]:
    return _plain(start_response, "401 Unauthorized", b"credentials required\n",
                  [("WWW-Authenticate", 'Basic realm="appliance"')])


def _plain(start_response: StartResponse, status: str, body: bytes,
           extra: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(status, headers + (extra or []))
    return [body]
