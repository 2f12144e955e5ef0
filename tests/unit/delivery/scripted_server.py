"""A tiny SMTP server for client tests that offers PIPELINING (aiosmtpd does not) and answers a
pipelined group only once the whole group has arrived, so a client that waits for each reply
before sending the next command stalls instead of passing."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any


@dataclasses.dataclass
class Script:
    greeting: bytes = b"220 scripted ESMTP ready\r\n"
    ehlo: bytes = b"250-scripted greets you\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 1000000\r\n250 HELP\r\n"
    rcpt: dict[str, bytes] = dataclasses.field(default_factory=dict)  # address -> reply
    data: bytes = b""  # reply to DATA; default: 354 if a recipient was accepted, else 554
    final: list[bytes] = dataclasses.field(default_factory=list)  # replies after the message, then 250
    starttls: bytes = b""  # reply to STARTTLS (no TLS here: for refusals and injection tests)
    silent_after: str = ""  # a verb after which nothing is answered any more
    close_after: str = ""  # a verb at which the server drops the connection
    close_at_message: int = 0  # drop the connection when the Nth message's content has arrived


class _Conn(asyncio.Protocol):
    def __init__(self, server: ScriptedServer) -> None:
        self.server = server
        self.buf = b""
        self.in_data = False
        self.mail = False
        self.accepted: list[str] = []
        self.pending: list[bytes] = []  # replies held until the group ends
        self.silent = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.connections += 1
        self.server.transports.append(transport)
        transport.write(self.server.script.greeting)

    def data_received(self, data: bytes) -> None:
        self.server.reads.append(data)
        self.buf += data
        while not self.silent:
            if self.in_data:
                end = self.buf.find(b"\r\n.\r\n")
                if end == -1:
                    return
                self.server.messages.append((self.accepted, self.buf[2:end + 2]))
                if len(self.server.messages) == self.server.script.close_at_message:
                    self.silent = True
                    self.transport.close()
                    return
                self.buf, self.in_data, self.mail, self.accepted = self.buf[end + 5:], False, False, []
                s = self.server.script
                self._reply(s.final.pop(0) if s.final else b"250 2.0.0 queued\r\n", flush=True)
                continue
            nl = self.buf.find(b"\r\n")
            if nl == -1:
                return
            line, self.buf = self.buf[:nl].decode(), self.buf[nl + 2:]
            self.server.commands.append(line)
            self._command(line)

    def _command(self, line: str) -> None:
        verb, _, arg = line.partition(" ")
        verb, s = verb.upper(), self.server.script
        if verb in (s.silent_after, s.close_after):
            self.silent = True
            if verb == s.close_after:
                self.transport.close()
            return
        if verb == "EHLO":
            self._reply(s.ehlo, flush=True)
        elif verb == "MAIL":
            self.mail = True
            self._reply(b"250 2.1.0 sender ok\r\n")
        elif verb == "RCPT":
            address = arg.partition(":")[2].strip().split(" ")[0].strip("<>")
            reply = s.rcpt.get(address, b"250 2.1.5 ok\r\n")
            if reply.startswith(b"25"):
                self.accepted.append(address)
            self._reply(reply)
        elif verb == "DATA":
            reply = s.data or (b"354 go on\r\n" if self.mail and self.accepted else b"554 5.5.1 no valid recipients\r\n")
            if reply.startswith(b"354"):
                self.in_data = True
                self.buf = b"\r\n" + self.buf
            self._reply(reply, flush=True)
        elif verb == "STARTTLS":
            self._reply(s.starttls or b"454 4.7.0 TLS not available\r\n", flush=True)
        elif verb == "QUIT":
            self._reply(b"221 bye\r\n", flush=True)
            self.transport.close()
        else:  # RSET, NOOP
            self.mail, self.accepted = False, []
            self._reply(b"250 2.0.0 ok\r\n", flush=True)

    def _reply(self, reply: bytes, *, flush: bool = False) -> None:
        self.pending.append(reply)
        if flush:  # RFC 2920 section 3.2: replies to a group may be sent together at its end
            self.transport.write(b"".join(self.pending))
            self.pending = []


class ScriptedServer:
    """`async with ScriptedServer(script) as srv:` listening on 127.0.0.1:`srv.port`."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.commands: list[str] = []
        self.reads: list[bytes] = []
        self.messages: list[tuple[list[str], bytes]] = []
        self.connections = 0
        self.transports: list[Any] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Conn(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for transport in self.transports:  # Server.close() leaves accepted connections open
            transport.close()
        self._server.close()
        await self._server.wait_closed()
