"""The functions policy scripts call, over injected edges (counters, rates, HTTP, mail, the queue)."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

from appliance.policy.sandbox import Deadline, ScriptError, from_lua

log = logging.getLogger(__name__)

_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 §2.2: printable US-ASCII except ':'
_SYSLOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO,
                  "warning": logging.WARNING, "warn": logging.WARNING, "err": logging.ERROR,
                  "error": logging.ERROR, "crit": logging.CRITICAL, "alert": logging.CRITICAL,
                  "emerg": logging.CRITICAL}
MAX_OUTPUT_LINES = 1000


class CountersLike(Protocol):
    def stat(self, key1: str, key2: str = "", key3: str = "", n: int = 1) -> None: ...


class RatesLike(Protocol):
    def rate(self, ns: str, entry: str, count: int, interval: int) -> bool: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class HttpClient(Protocol):
    def request(self, url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
                body: bytes = b"", timeout: float = 10.0, ca_file: str = "",
                verify: bool = True) -> HttpResponse: ...


class Mailer(Protocol):
    def send(self, sender: str, recipient: str, subject: str, body: str) -> str:
        """Queue a notification; return its msgid."""


class QueueAccess(Protocol):
    def set_metadata(self, queueid: int, key: str, value: str, *, msgid: str = "") -> None: ...
    def queue_metric(self, field: str, value: str) -> int: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class Functions:
    """The node's edges that scripts reach; any left as None makes that function raise."""

    counters: CountersLike | None = None
    rates: RatesLike | None = None
    http: HttpClient | None = None
    mailer: Mailer | None = None
    queue: QueueAccess | None = None


@dataclasses.dataclass(kw_only=True)
class RunContext:
    """What one handler run did: its output, its calls, and changes for the flow to apply."""

    flow: str
    label: str  # "<msgid>" or "<msgid>:<queueid>" or the client address, for log lines
    queueid: int = 0
    msgid: str = ""
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    metadata_writable: bool = True
    add_headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    remove_headers: list[str] = dataclasses.field(default_factory=list)
    output: list[str] = dataclasses.field(default_factory=list)
    calls: list[str] = dataclasses.field(default_factory=list)
    record_calls: bool = False  # scriptTest wants the call log; the mail path does not pay for it
    rate_limited: list[str] = dataclasses.field(default_factory=list)  # buckets found over their limit

    def note(self, line: Callable[[], str]) -> None:
        if self.record_calls and len(self.calls) < MAX_OUTPUT_LINES:
            self.calls.append(line())


def _text(value: Any, what: str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ScriptError(f"{what} must be a string")


def _opt_text(value: Any, what: str) -> str:
    return "" if value is None else _text(value, what)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ScriptError(f"{what} must be a whole number")
    return int(value)


class Bindings:
    """The Python side of the script functions, bound to one sandbox; `ctx` is set per run."""

    def __init__(self, functions: Functions, *, script: str) -> None:
        self.functions = functions
        self.script = script
        self.ctx = RunContext(flow="", label="")
        self.to_lua: Callable[[Any], Any] = lambda value: value
        self.deadline = Deadline()  # the sandbox's run clock (pass it as Sandbox(deadline=...))

    def table(self) -> dict[str, Callable[..., Any]]:
        return {
            "stat": self.stat, "rate": self.rate, "set_metadata": self.set_metadata,
            "get_metadata": self.get_metadata, "queue_metric": self.queue_metric,
            "http": self.http, "json_encode": self.json_encode, "json_decode": self.json_decode,
            "mail": self.mail, "syslog": self.syslog, "echo": self.echo,
            "add_header": self.add_header, "remove_header": self.remove_header,
        }

    def _need(self, edge: Any, name: str) -> Any:
        if edge is None:
            raise ScriptError(f"{name}() is not available here")
        return edge

    def stat(self, k1: Any, k2: Any = None, k3: Any = None, n: Any = 1) -> None:
        # The hot path of P7: plain byte-string keys and an integer count skip the checks.
        if type(k1) is bytes and type(k2) is bytes and type(k3) is bytes and type(n) is int:
            keys = (k1.decode("utf-8", "replace"), k2.decode("utf-8", "replace"), k3.decode("utf-8", "replace"))
            count = n
        else:
            keys = (_text(k1, "stat key1"), _opt_text(k2, "stat key2"), _opt_text(k3, "stat key3"))
            count = _int(n, "stat count")
        counters = self.functions.counters
        if counters is None:
            raise ScriptError("stat() is not available here")
        counters.stat(keys[0], keys[1], keys[2], count)
        if self.ctx.record_calls:
            self.ctx.note(lambda: f"stat({', '.join(repr(k) for k in keys)}, {count})")

    def rate(self, ns: Any, entry: Any, count: Any, interval: Any) -> bool:
        args = (_text(ns, "rate namespace"), _text(entry, "rate entry"),
                _int(count, "rate count"), _int(interval, "rate interval"))
        allowed = bool(self._need(self.functions.rates, "rate").rate(*args))
        if not allowed:
            self.ctx.rate_limited.append(f"{args[0]}:{args[1]} {args[2]}/{args[3]}s")
        self.ctx.note(lambda: f"rate({args[0]!r}, {args[1]!r}, {args[2]}, {args[3]}) -> {str(allowed).lower()}")
        return allowed

    def set_metadata(self, key: Any, value: Any) -> None:
        k, v = _text(key, "metadata key"), _text(value, "metadata value")
        if not 1 <= len(k) <= 128:
            raise ScriptError("metadata key must be 1 to 128 characters")
        if not self.ctx.metadata_writable:
            raise ScriptError(f"set_metadata() is not available in the {self.ctx.flow} flow")
        self.ctx.metadata[k] = v
        if self.ctx.queueid:
            self._need(self.functions.queue, "set_metadata").set_metadata(self.ctx.queueid, k, v, msgid=self.ctx.msgid)
        self.ctx.note(lambda: f"set_metadata({k!r}, {v!r})")

    def get_metadata(self, key: Any) -> bytes | None:
        value = self.ctx.metadata.get(_text(key, "metadata key"))
        return None if value is None else value.encode("utf-8")

    def queue_metric(self, field: Any, value: Any) -> int:
        f, v = _text(field, "queue_metric field"), _text(value, "queue_metric value")
        return self._need(self.functions.queue, "queue_metric").queue_metric(f, v)

    def http(self, url: Any, options: Any = None) -> tuple[int, Any, bytes]:
        opts = from_lua(options) if options is not None else {}
        if not isinstance(opts, dict):
            raise ScriptError("http() options must be a table")
        headers = opts.get("headers") or {}
        if not isinstance(headers, dict):
            raise ScriptError("http() headers must be a table of name = value")
        body = opts.get("body") or ""
        client = self._need(self.functions.http, "http")
        timeout = self.deadline.http_window(float(opts.get("timeout") or 10.0))
        started = time.monotonic()
        try:
            response = client.request(
                _text(url, "http url"), method=str(opts.get("method") or "GET").upper(),
                headers={str(k): str(v) for k, v in headers.items()}, body=str(body).encode("utf-8"),
                timeout=timeout, ca_file=str(opts.get("ca_file") or ""),
                verify=opts.get("verify") is not False,
            )
        finally:
            self.deadline.http_spent(time.monotonic() - started)
        self.ctx.note(lambda: f"http({_text(url, 'url')!r}) -> {response.status}")
        return response.status, self.to_lua(response.headers), response.body

    def json_encode(self, value: Any) -> bytes:
        return json.dumps(from_lua(value), separators=(",", ":")).encode("utf-8")

    def json_decode(self, text: Any) -> Any:
        try:
            return self.to_lua(json.loads(_text(text, "json text")))
        except ValueError as exc:
            raise ScriptError(f"json_decode: {exc}") from exc

    def mail(self, sender: Any, recipient: Any, subject: Any, body: Any) -> bytes:
        args = (_text(sender, "mail from"), _text(recipient, "mail to"),
                _text(subject, "mail subject"), _text(body, "mail body"))
        msgid = self._need(self.functions.mailer, "mail").send(*args)
        self.ctx.note(lambda: f"mail({args[0]!r}, {args[1]!r}, {args[2]!r}) -> {msgid}")
        log.info("policy %s %s queued notification <%s> to %s", self.script, self.ctx.label, msgid, args[1])
        return msgid.encode()

    def syslog(self, level: Any, text: Any) -> None:
        name = _text(level, "syslog level").lower()
        if name not in _SYSLOG_LEVELS:
            raise ScriptError(f"syslog level must be one of {', '.join(_SYSLOG_LEVELS)}")
        line = _text(text, "syslog text")
        log.log(_SYSLOG_LEVELS[name], "policy %s %s %s: %s", self.script, self.ctx.label, self.ctx.flow, line)
        self._output(f"[{name}] {line}")

    def echo(self, text: Any) -> None:
        line = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(from_lua(text))
        log.info("policy %s %s %s echo: %s", self.script, self.ctx.label, self.ctx.flow, line)
        self._output(line)

    def _output(self, line: str) -> None:
        if len(self.ctx.output) < MAX_OUTPUT_LINES:
            self.ctx.output.append(line)

    def add_header(self, name: Any, value: Any) -> None:
        n, v = _text(name, "header name"), _text(value, "header value")
        self._check_data("add_header")
        if not _HEADER_NAME.match(n) or "\r" in v or "\n" in v:
            raise ScriptError(f"add_header: invalid header {n!r} (no ':' in names, no CR/LF in values)")
        self.ctx.add_headers.append((n, v))

    def remove_header(self, name: Any) -> None:
        n = _text(name, "header name")
        self._check_data("remove_header")
        if not _HEADER_NAME.match(n):
            raise ScriptError(f"remove_header: invalid header name {n!r}")
        self.ctx.remove_headers.append(n)

    def _check_data(self, name: str) -> None:
        if self.ctx.flow != "data":
            raise ScriptError(f"{name}() is only available in the data flow")
