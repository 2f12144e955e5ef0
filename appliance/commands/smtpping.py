"""`smtpping HOST[:PORT]`: connect, read the banner, EHLO, QUIT, and report each step's time."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
import time
from collections.abc import Callable, Sequence

from appliance.commands.base import ArgvParser, CommandContext, CommandSpec, Terminal
from appliance.settings import parse_hostport

TIMEOUT = 10.0
MAX_REPLY_LINES = 100
_HOST = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")


@dataclasses.dataclass(frozen=True)
class Args:
    host: str
    port: int


def parse(argv: Sequence[str]) -> Args:
    p = ArgvParser("smtpping")
    p.add_argument("target", metavar="HOST[:PORT]")
    target = p.parse_argv(argv).target
    try:
        host, port = _split(target)
    except ValueError as exc:
        p.error(str(exc))
    if port == 0:
        p.error("PORT must be 1-65535")
    return Args(host=host, port=port)


def _split(target: str) -> tuple[str, int]:
    bare = target.strip("[]")
    if _valid_host(bare):  # no port: the SMTP port (RFC 5321 section 4.5.4.2 relays use 25)
        return bare, 25
    host, port = parse_hostport(target, default_host="")
    if not _valid_host(host):
        raise ValueError(f"not a host name or address: {host!r}")
    return host, port


def _valid_host(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return len(text) <= 253 and bool(_HOST.match(text))


class _Conversation:
    """A line reader over the socket; replies are one or more lines (RFC 5321 section 4.2.1)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")

    def reply(self) -> list[str]:
        lines: list[str] = []
        while len(lines) < MAX_REPLY_LINES:
            raw = self.reader.readline(4096)
            if not raw:
                raise ConnectionError("connection closed by the server")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines
        raise ConnectionError(f"reply longer than {MAX_REPLY_LINES} lines")

    def command(self, text: str) -> list[str]:
        self.sock.sendall(text.encode("ascii") + b"\r\n")
        return self.reply()


def run(ctx: CommandContext, args: Args, term: Terminal) -> None:
    started = step = time.monotonic()

    def took() -> str:
        nonlocal step
        now = time.monotonic()
        elapsed, step = now - step, now
        return f"{elapsed * 1000:.1f} ms"

    try:
        sock = socket.create_connection((args.host, args.port), timeout=TIMEOUT)
    except OSError as exc:
        term.write(f"connect to {args.host} port {args.port} failed: {exc.strerror or exc}\n")
        return
    with sock:
        peer = sock.getpeername()
        term.write(f"connected to {peer[0]} port {peer[1]} in {took()}\n")
        talk = _Conversation(sock)
        try:
            _exchange(term, "banner", talk.reply, took)
            _exchange(term, f"EHLO {ctx.hostname}", lambda: talk.command(f"EHLO {ctx.hostname}"), took)
            _exchange(term, "QUIT", lambda: talk.command("QUIT"), took)
        except (OSError, ConnectionError) as exc:
            term.write(f"failed after {took()}: {exc}\n")
    term.write(f"total {(time.monotonic() - started) * 1000:.1f} ms\n")


def _exchange(term: Terminal, label: str, call: Callable[[], list[str]], took: Callable[[], str]) -> None:
    lines = call()
    elapsed = took()
    term.write(f"{label}: {elapsed}\n" + "".join(f"  {line}\n" for line in lines))


SPEC = CommandSpec(
    name="smtpping",
    usage="smtpping HOST[:PORT]",
    description="Connect to an SMTP server (port 25 by default), read its banner, EHLO and QUIT, "
    "with the time each step took",
    parse=parse,
    run=run,
)
