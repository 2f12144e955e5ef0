"""The HTTP client behind http() in scripts: http/https on every hop, allowed hosts only, one deadline."""

from __future__ import annotations

import functools
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from appliance.policy.functions import HttpResponse
from appliance.policy.sandbox import ScriptError

MAX_BODY = 4 * 1024 * 1024
MAX_REDIRECTS = 5
PUBLIC = "public"
# The default `policy.http_allow`: any globally routable address, nothing on the node itself
# (loopback), on its private networks or link-local (cloud metadata at 169.254.169.254).
DEFAULT_ALLOW = (PUBLIC,)
_HOST_PATTERN = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[tuple[Any, ...]]]


def check_allow_entry(entry: str) -> str:
    """One `policy.http_allow` entry: "public", a CIDR or address, a host name or "*.domain"."""
    text = entry.strip().lower()
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        if text == PUBLIC or _HOST_PATTERN.match(text):
            return text
        raise ValueError(f"{entry!r} is not 'public', a CIDR, an address or a host name") from None


class Destinations:
    """Which hosts http() may reach. A host-name entry allows that name whatever it resolves
    to; otherwise the address actually connected to must be inside a CIDR entry, or global
    when "public" is listed. Checked per connection, so DNS answers cannot move a request."""

    def __init__(self, entries: Sequence[str]) -> None:
        checked = [check_allow_entry(e) for e in entries]
        self.public = PUBLIC in checked
        self.names = frozenset(e for e in checked if e != PUBLIC and not _is_network(e))
        self.networks = tuple(ipaddress.ip_network(e) for e in checked if _is_network(e))

    def allows_name(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self.names or any(
            n.startswith("*.") and host.endswith(n[1:]) for n in self.names)

    def allows_address(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in self.networks):
            return True
        return self.public and address.is_global and not address.is_multicast


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry)
    except ValueError:
        return False
    return True


class _Request:
    """One http() call: its destinations, its deadline, and the sockets to cut when it passes."""

    def __init__(self, allow: Destinations, timeout: float, resolve: Resolver) -> None:
        self.allow = allow
        self.resolve = resolve
        self.ends = time.monotonic() + timeout
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout, self._cut)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(self.ends - time.monotonic(), 0.01)

    def connect(self, host: str, port: int) -> socket.socket:
        named = self.allow.allows_name(host)
        try:
            infos = self.resolve(host, port)
        except OSError as exc:
            raise ScriptError(f"http(): cannot resolve {host!r}") from exc
        failure: OSError | None = None
        for family, kind, proto, _, sockaddr in infos:
            if not (named or self.allow.allows_address(ipaddress.ip_address(sockaddr[0].split("%")[0]))):
                continue
            sock = socket.socket(family, kind, proto)
            self._watch(sock)
            try:
                sock.settimeout(self.remaining())
                sock.connect(sockaddr)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except OSError as exc:
                sock.close()
                failure = exc
        if failure is not None:
            raise failure
        raise ScriptError(f"http(): {host} is not an allowed destination (policy.http_allow)")

    def _watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._cut()

    def _cut(self) -> None:
        # Every read and connect has a timeout, but many slow reads add up: at the deadline
        # the sockets are shut, which wakes whatever is blocked on them.
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._timer.cancel()


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, *, request: _Request, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self._request = request

    def connect(self) -> None:
        self.sock = self._request.connect(self.host, self.port)


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, *, request: _Request, tls: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(host, context=tls, **kwargs)
        self._request, self._tls = request, tls

    def connect(self) -> None:
        sock = self._request.connect(self.host, self.port)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


class _Handler(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
    """Both schemes over connections that only reach allowed destinations."""

    def __init__(self, request: _Request, tls: ssl.SSLContext) -> None:
        urllib.request.HTTPHandler.__init__(self)
        self._request, self._tls = request, tls

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_HTTPConnection, request=self._request), req)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_HTTPSConnection, request=self._request, tls=self._tls), req)


class _Redirects(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS

    def http_error_302(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                       headers: Any) -> Any:
        location = headers.get("location") or headers.get("uri") or ""
        _check_scheme(urllib.parse.urljoin(req.full_url, location), "a redirect")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        _check_scheme(newurl, "a redirect")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _check_scheme(url: str, what: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise ScriptError(f"http(): {what} to a {scheme or 'relative'}: URL is refused (http and https only)")


class UrllibHttpClient:
    """urllib with no proxy, ftp, file or data handlers; errors become a ScriptError the script may pcall().

    `allow` gives the current `policy.http_allow` (read per call, so config changes apply);
    `files=False` (scriptTest) refuses options naming local files, before touching them.
    """

    def __init__(self, *, max_body: int = MAX_BODY, max_timeout: float = 30.0,
                 allow: Callable[[], Sequence[str]] = lambda: DEFAULT_ALLOW, files: bool = True,
                 resolve: Resolver | None = None) -> None:
        self.max_body = max_body
        self.max_timeout = max_timeout
        self.files = files
        self._allow = allow
        self._resolve: Resolver = resolve or (lambda host, port: socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM))
        self._cached: tuple[tuple[str, ...], Destinations] | None = None

    def destinations(self) -> Destinations:
        entries = tuple(self._allow())
        if self._cached is None or self._cached[0] != entries:
            self._cached = (entries, Destinations(entries))
        return self._cached[1]

    def request(self, url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
                body: bytes = b"", timeout: float = 10.0, ca_file: str = "",
                verify: bool = True) -> HttpResponse:
        _check_scheme(url, "a request")
        if ca_file and not self.files:
            raise ScriptError("http(): the ca_file option is not available here")
        tls = self._tls(ca_file, verify)
        request = _Request(self.destinations(), min(max(timeout, 0.1), self.max_timeout), self._resolve)
        opener = urllib.request.OpenerDirector()
        for handler in (_Handler(request, tls), _Redirects(), urllib.request.HTTPErrorProcessor(),
                        urllib.request.HTTPDefaultErrorHandler()):
            opener.add_handler(handler)
        try:
            req = urllib.request.Request(url, data=body or None, headers=headers or {}, method=method)
            return self._fetch(opener, req, request)
        finally:
            request.close()

    def _tls(self, ca_file: str, verify: bool) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=ca_file or None)
        except (OSError, ssl.SSLError, ValueError) as exc:
            # One message whatever went wrong, so that a script cannot probe the file system.
            raise ScriptError("http(): ca_file could not be used") from exc
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _fetch(self, opener: urllib.request.OpenerDirector, req: urllib.request.Request,
               request: _Request) -> HttpResponse:
        url = req.full_url
        try:
            with opener.open(req, timeout=request.remaining()) as response:
                answer = HttpResponse(status=response.status, headers=dict(response.headers.items()),
                                      body=response.read(self.max_body))
        except urllib.error.HTTPError as exc:  # a 4xx/5xx is an answer, not a failure
            with exc:
                answer = HttpResponse(status=exc.code, headers=dict(exc.headers.items()),
                                      body=exc.read(self.max_body))
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            if request.expired:
                raise ScriptError(f"http({url!r}) failed: timed out") from exc
            raise ScriptError(f"http({url!r}) failed: {getattr(exc, 'reason', exc)}") from exc
        if request.expired:
            raise ScriptError(f"http({url!r}) failed: timed out")
        return answer
