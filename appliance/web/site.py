"""The API listener's paths: /remote/ (SOAP), /metrics, /healthz, /readyz, and the web console
at every other path."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from appliance.soap.auth import Authenticator, basic_credentials
from appliance.web.health import Health, report

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
NO_STORE = [("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")]


class Site:
    """Routes by path: health and metrics here, /remote/ to the SOAP gateway, every other path
    to the console (or the gateway, which answers 404, on a site without one)."""

    def __init__(self, soap: WsgiApp, *, health: Health, authenticator: Authenticator,
                 metrics: Callable[[], bytes], metrics_content_type: str,
                 metrics_loopback_open: bool = False, console: WsgiApp | None = None) -> None:
        self.soap = soap
        self.console = console
        self.health = health
        self.auth = authenticator
        self.metrics = metrics
        self.metrics_content_type = metrics_content_type
        self.metrics_loopback_open = metrics_loopback_open

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
                return _plain(start_response, "405 Method Not Allowed", b"use GET\n")
            checks = self.health.live() if path == "/healthz" else self.health.ready()
            ok, body = report(checks)
            return _plain(start_response, "200 OK" if ok else "503 Service Unavailable", body)
        if path == "/metrics":
            return self._metrics(environ, start_response)
        if self.console is not None and not (path == "/remote" or path.startswith("/remote/")):
            return self.console(environ, start_response)
        return self.soap(environ, start_response)

    def _metrics(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        remote = str(environ.get("REMOTE_ADDR", ""))
        if not (self.metrics_loopback_open and _loopback(remote)):
            name, password = basic_credentials(str(environ.get("HTTP_AUTHORIZATION", "")))
            login = self.auth.check(name, password or "", remote) if name else None
            if login is not None and login.retry_after:
                return _plain(start_response, "429 Too Many Requests", b"too many failed logins\n",
                              [("Retry-After", str(int(login.retry_after) + 1))])
            if login is None or login.level is None:
                return _plain(start_response, "401 Unauthorized", b"credentials required\n",
                              [("WWW-Authenticate", 'Basic realm="appliance"')])
            if not login.level.may_scrape_metrics:
                return _plain(start_response, "403 Forbidden",
                              b"metrics need the admin, readonly or metrics level\n")
        return _plain(start_response, "200 OK", self.metrics(), content_type=self.metrics_content_type)


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _plain(start_response: StartResponse, status: str, body: bytes,
           extra: list[tuple[str, str]] | None = None, *,
           content_type: str = "text/plain; charset=utf-8") -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            *NO_STORE, *(extra or [])])
    return [body]
