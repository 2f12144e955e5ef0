"""The outbound SMTP edge: one session to a next hop (smtpclient), behind the Connector protocol."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Sequence
from typing import Protocol

from appliance.replies import Reply, connection_error
from appliance.delivery.routing import Hop
from appliance.delivery.smtpclient import SmtpClient, SmtpError, SmtpReplyError, TransactionReplies


class SessionError(Exception):
    """The session is unusable (connection lost, greeting refused, TLS required but absent).
    `done` holds the outcomes of the messages of a `send_many` that completed before."""

    def __init__(self, reply: Reply, *, done: Sequence[dict[str, Reply]] = ()) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.done = list(done)


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """One message to send: the envelope as queued and the body as spooled."""

    sender: str
    recipients: tuple[str, ...]
    body: bytes


@dataclasses.dataclass(frozen=True, kw_only=True)
class SessionOptions:
    helo: str
    starttls: str = "opportunistic"  # none | opportunistic | require
    tls_verify: bool = False
    connect_timeout: float = 30.0
    timeout: float = 120.0
    source_ip: str = ""


class OutboundSession(Protocol):
    peer: str  # "name[address]:port" for logs
    tls: bool

    @property
    def usable(self) -> bool: ...
    async def send(self, sender: str, recipients: Sequence[str], body: bytes) -> dict[str, Reply]:
        """One transaction; the final reply per recipient. Raises SessionError if the session
        broke before the outcome was known (the caller retries the whole transaction)."""
    async def send_many(self, messages: Sequence[Outgoing]) -> list[dict[str, Reply]]:
        """Several transactions in order (pipelined where the server allows); SessionError
        carries in `done` the outcomes of those completed before the session broke."""
    async def close(self) -> None: ...


class Connector(Protocol):
    async def open(self, hop: Hop, options: SessionOptions) -> OutboundSession:
        """Connect, greet and negotiate TLS; raises SessionError with the reply or error."""


class SmtpConnector:
    """Real SMTP (appliance.delivery.smtpclient, pipelined when offered). `verify_context` is
    the trust store used when a transport asks for certificate verification (default: the
    system's)."""

    def __init__(self, *, verify_context: ssl.SSLContext | None = None) -> None:
        self._verify = verify_context
        self._no_verify: ssl.SSLContext | None = None

    def _context(self, verify: bool) -> ssl.SSLContext:
        if verify:
            if self._verify is None:
                self._verify = ssl.create_default_context()
            return self._verify
        if self._no_verify is None:
            # Opportunistic TLS without verification (RFC 7435): encrypts against passive eyes.
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self._no_verify = ctx
        return self._no_verify

    async def open(self, hop: Hop, options: SessionOptions) -> OutboundSession:
        try:
            client, greeting = await SmtpClient.connect(
                hop.address, hop.port, timeout=options.timeout, connect_timeout=options.connect_timeout,
                source_address=(options.source_ip, 0) if options.source_ip else None,
            )
        except SmtpError as exc:
            raise SessionError(connection_error(exc)) from exc
        session = _Session(client, f"{hop.name}[{hop.address}]:{hop.port}")
        try:
            if greeting.code != 220:  # RFC 5321 section 3.1: 554 (or 421) refuses the session
                raise SmtpReplyError(greeting)
            await client.hello(options.helo)
            if options.starttls != "none":
                await session.negotiate_tls(hop, options, self._context(options.tls_verify))
        except SmtpReplyError as exc:
            await client.quit()
            raise SessionError(exc.reply) from exc
        except SmtpError as exc:
            client.close()
            raise SessionError(connection_error(exc)) from exc
        return session


class _Session:
    def __init__(self, client: SmtpClient, peer: str) -> None:
        self._client = client
        self.peer = peer
        self.tls = False
        self._broken = False

    @property
    def usable(self) -> bool:
        return not self._broken and self._client.is_connected

    async def negotiate_tls(self, hop: Hop, options: SessionOptions, ctx: ssl.SSLContext) -> None:
        if not self._client.supports("STARTTLS"):
            if options.starttls == "require":
                raise SmtpReplyError(Reply(0, f"TLS is required, but {hop.name} does not offer STARTTLS"))
            return
        reply = await self._client.starttls(ctx, hop.name)
        if reply.code != 220:
            if options.starttls == "require":
                raise SmtpReplyError(reply)
            return  # opportunistic: a refused STARTTLS leaves a plain session (RFC 3207 section 4.1)
        self.tls = True
        await self._client.hello(options.helo)

    async def send(self, sender: str, recipients: Sequence[str], body: bytes) -> dict[str, Reply]:
        [replies] = await self.send_many([Outgoing(sender, tuple(recipients), body)])
        return replies

    async def send_many(self, messages: Sequence[Outgoing]) -> list[dict[str, Reply]]:
        commands: list[tuple[bytes, list[bytes], bytes]] = []
        local: dict[int, dict[str, Reply]] = {}  # refused here, never sent
        for i, m in enumerate(messages):
            refusal = self._refusal(m)
            if refusal is not None:
                local[i] = {r: refusal for r in m.recipients}
            else:
                commands.append((self._mail(m), [_path(b"RCPT TO:", r) for r in m.recipients], m.body))
        outs, error = await self._client.transactions(commands)
        sent = iter(zip(outs, (m for i, m in enumerate(messages) if i not in local)))
        done: list[dict[str, Reply]] = []
        for i, m in enumerate(messages):
            if i in local:
                done.append(local[i])
                continue
            pair = next(sent, None)
            if pair is None:
                break
            done.append(self._replies(m, pair[0]))
        if error is not None:
            self._broken = True
            self._client.close()
            raise SessionError(connection_error(error), done=done)
        if outs and not outs[-1].sent and not self._broken:
            try:  # the last transaction is still open (MAIL accepted): end it
                await self._rset()
            except SmtpError:
                self._broken = True
                self._client.close()
        return done

    def _refusal(self, m: Outgoing) -> Reply | None:
        utf8 = not (m.sender.isascii() and all(r.isascii() for r in m.recipients))
        if utf8 and not self._client.supports("SMTPUTF8"):
            # RFC 6531 section 3.2: the message cannot be delivered without SMTPUTF8.
            return Reply(553, "5.6.7 the next hop does not support SMTPUTF8")
        bad = [a for a in (m.sender, *m.recipients) if not _valid_path(a)]
        return Reply(553, f"5.1.3 bad address {bad[0]!r}") if bad else None

    def _mail(self, m: Outgoing) -> bytes:
        mail = _path(b"MAIL FROM:", m.sender)
        if not (m.sender.isascii() and all(r.isascii() for r in m.recipients)):
            mail += b" SMTPUTF8"
        if self._client.supports("8BITMIME") and not m.body.isascii():
            mail += b" BODY=8BITMIME"
        if self._client.supports("SIZE"):
            mail += b" SIZE=%d" % len(m.body)  # RFC 1870: lets the server refuse before the body
        return mail

    def _replies(self, m: Outgoing, out: TransactionReplies) -> dict[str, Reply]:
        """Each recipient's outcome: its RCPT refusal, or the reply to its message."""
        if any(r.code == 421 for r in (out.mail, *out.rcpts, out.data) if r is not None):
            self._broken = True  # RFC 5321 section 3.8: the server is closing the channel
        if out.mail.code != 250:
            return {r: out.mail for r in m.recipients}
        replies = dict(zip(m.recipients, out.rcpts))
        if out.data is not None:
            for rcpt, reply in list(replies.items()):
                if reply.code in (250, 251):
                    replies[rcpt] = out.data
        return replies

    async def _rset(self) -> None:
        reply = await self._client.command(b"RSET")
        self._broken = reply.code != 250

    async def close(self) -> None:
        await self._client.quit()


def _valid_path(address: str) -> bool:
    """Nothing that could end or split an SMTP command line (reception validated the rest)."""
    return not any(c in address for c in "<>\r\n\x00")


def _path(prefix: bytes, address: str) -> bytes:
    """A reverse- or forward-path, sent exactly as queued (RFC 5321 section 4.1.2)."""
    return prefix + b"<" + address.encode("utf-8") + b">"
