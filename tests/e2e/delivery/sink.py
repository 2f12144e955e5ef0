"""An aiosmtpd next-hop sink on loopback that records messages and connections and can be told
to refuse recipients or answer DATA with scripted replies."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.postgres import free_port


@dataclasses.dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    peer: tuple[str, int]
    tls: bool


class SinkHandler:
    def __init__(self, *, delay: float = 0.0) -> None:
        self.messages: list[Received] = []
        self.peers: set[tuple[str, int]] = set()
        self.rcpt_replies: dict[str, str] = {}  # recipient -> refusal
        self.data_replies: list[str] = []  # replies to the next DATAs, then 250
        self.delay = delay

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        self.peers.add(session.peer)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        refusal = self.rcpt_replies.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.data_replies:
            reply = self.data_replies.pop(0)
            if not reply.startswith("250"):
                return reply
        self.messages.append(Received(
            envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content,
            session.peer, session.ssl is not None,
        ))
        return "250 OK queued"


class Sink:
    """`with Sink() as sink:` — an SMTP server on 127.0.0.1:`sink.port`."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None, delay: float = 0.0) -> None:
        self.handler = SinkHandler(delay=delay)
        self.port = free_port()
        kwargs: dict[str, Any] = {"tls_context": tls_context} if tls_context else {}
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                      ready_timeout=10, **kwargs)

    def __enter__(self) -> Sink:
        self._controller.start()  # returns once the socket answers
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages
