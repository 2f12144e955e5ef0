"""The outbound SMTP edge: one session to a next hop (aiosmtplib), behind the Connector protocol."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Sequence
from typing import Protocol

import aiosmtplib

from appliance.delivery.replies import Reply, connection_error
from appliance.delivery.routing import Hop


class SessionError(Exception):
    """The session is unusable (connection lost, greeting refused, TLS required but absent)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


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
    async def close(self) -> None: ...


class Connector(Protocol):
    async def open(self, hop: Hop, options: SessionOptions) -> OutboundSession:
        """Connect, greet and negotiate TLS; raises SessionError with the reply or error."""


class SmtpConnector:
    """Real SMTP over aiosmtplib. `verify_context` is the trust store used when a transport
    asks for certificate verification (default: the system's)."""

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
        smtp = aiosmtplib.SMTP(
            hostname=hop.address, port=hop.port, local_hostname=options.helo,
            timeout=options.timeout, start_tls=False,
            source_address=(options.source_ip, 0) if options.source_ip else None,
        )
        session = _Session(smtp, f"{hop.name}[{hop.address}]:{hop.port}")
        try:
            await smtp.connect(timeout=options.connect_timeout)
            await _greet(smtp)
            if options.starttls != "none":
                await session.negotiate_tls(hop, options, self._context(options.tls_verify))
        except aiosmtplib.SMTPResponseException as exc:
            smtp.close()
            raise SessionError(Reply(exc.code, exc.message)) from exc
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
            smtp.close()
            raise SessionError(connection_error(exc)) from exc
        return session


async def _greet(smtp: aiosmtplib.SMTP) -> None:
    """EHLO, falling back to HELO for old servers (RFC 5321 section 4.1.4)."""
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError:
        await smtp.helo()


class _Session:
    def __init__(self, smtp: aiosmtplib.SMTP, peer: str) -> None:
        self._smtp = smtp
        self.peer = peer
        self.tls = False
        self._broken = False

    @property
    def usable(self) -> bool:
        return not self._broken and self._smtp.is_connected

    async def negotiate_tls(self, hop: Hop, options: SessionOptions, ctx: ssl.SSLContext) -> None:
        if not self._smtp.supports_extension("starttls"):
            if options.starttls == "require":
                self._smtp.close()
                raise SessionError(Reply(0, f"TLS is required, but {hop.name} does not offer STARTTLS"))
            return
        try:
            await self._smtp.starttls(server_hostname=hop.name, tls_context=ctx, timeout=options.timeout)
        except aiosmtplib.SMTPResponseException:
            if options.starttls == "require" or not self._smtp.is_connected:
                raise
            return  # opportunistic: a refused STARTTLS leaves a plain session (RFC 3207 section 4.1)
        self.tls = True
        await _greet(self._smtp)

    async def send(self, sender: str, recipients: Sequence[str], body: bytes) -> dict[str, Reply]:
        try:
            return await self._transaction(sender, recipients, body)
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
            self._broken = True
            self._smtp.close()
            raise SessionError(connection_error(exc)) from exc

    async def _transaction(self, sender: str, recipients: Sequence[str], body: bytes) -> dict[str, Reply]:
        utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
        if utf8 and not self._smtp.supports_extension("smtputf8"):
            # RFC 6531 section 3.2: the message cannot be delivered without SMTPUTF8.
            return {r: Reply(553, "5.6.7 the next hop does not support SMTPUTF8") for r in recipients}
        bad = [a for a in (sender, *recipients) if not _valid_path(a)]
        if bad:
            return {r: Reply(553, f"5.1.3 bad address {bad[0]!r}") for r in recipients}
        options = [b"SMTPUTF8"] if utf8 else []
        if self._smtp.supports_extension("8bitmime") and not body.isascii():
            options.append(b"BODY=8BITMIME")
        reply = await self._command(b"MAIL", _path(b"FROM:", sender), *options)
        if reply.code != 250:
            await self._rset()
            return {r: reply for r in recipients}
        replies: dict[str, Reply] = {}
        for rcpt in recipients:
            rr = await self._command(b"RCPT", _path(b"TO:", rcpt))
            replies[rcpt] = rr
        accepted = [r for r in recipients if replies[r].code in (250, 251)]
        if not accepted:
            await self._rset()
            return replies
        try:
            data = await self._smtp.data(body)
        except aiosmtplib.SMTPResponseException as exc:  # DATA or the body refused
            self._broken = self._broken or exc.code == 421
            data = aiosmtplib.SMTPResponse(exc.code, exc.message)
        for rcpt in accepted:
            replies[rcpt] = Reply(data.code, data.message)
        return replies

    async def _command(self, *args: bytes) -> Reply:
        response = await self._smtp.execute_command(*args)
        if response.code == 421:  # RFC 5321 section 3.8: the server is closing the channel
            self._broken = True
        return Reply(response.code, response.message)

    async def _rset(self) -> None:
        if not self._broken:
            reply = await self._command(b"RSET")
            self._broken = reply.code != 250

    async def close(self) -> None:
        try:
            if self.usable:
                await self._smtp.quit()
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError):
            pass
        finally:
            self._smtp.close()


def _valid_path(address: str) -> bool:
    """Nothing that could end or split an SMTP command line (reception validated the rest)."""
    return not any(c in address for c in "<>\r\n\x00")


def _path(prefix: bytes, address: str) -> bytes:
    """A reverse- or forward-path, sent exactly as queued (RFC 5321 section 4.1.2)."""
    return prefix + b"<" + address.encode("utf-8") + b">"
