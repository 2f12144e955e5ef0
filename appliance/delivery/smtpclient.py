"""A small asyncio SMTP client for delivery: EHLO/HELO, STARTTLS, PIPELINING (RFC 2920), DATA."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import re
import ssl
from collections.abc import Sequence

from appliance.replies import Reply

MAX_LINE = 8192  # a reply line is at most 512 octets (RFC 5321 section 4.5.3.1.5); allow slack
MAX_LINES = 200  # lines in one multiline reply
_LINE_ENDINGS = re.compile(rb"\r\n|\r|\n")


class SmtpError(Exception):
    """Base of the client's errors (as aiosmtplib.SMTPException)."""


class SmtpConnectError(SmtpError, ConnectionError):
    """The TCP connection could not be made."""


class SmtpDisconnected(SmtpError, ConnectionError):
    """The server closed the connection, or the client closed it after an error."""


class SmtpProtocolError(SmtpError, ConnectionError):
    """The server sent something that is not an SMTP reply; the session is unusable."""


class SmtpTimeout(SmtpError, TimeoutError):
    """No reply (or no progress writing) within the time allowed."""


class SmtpReplyError(SmtpError):
    """A reply that does not let the session go on (a refused greeting, EHLO and HELO refused)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


@dataclasses.dataclass(frozen=True)
class TransactionReplies:
    """Every reply of one mail transaction, in the order the commands were sent.

    `data` is the reply to DATA when it was refused, else the final reply after the message
    (None when DATA was not sent: no pipelining and nothing accepted). `sent` is True once the
    message was transferred and answered, which ends the transaction whatever the reply.
    """

    mail: Reply
    rcpts: list[Reply]
    data: Reply | None
    sent: bool = False


def parse_line(line: bytes) -> tuple[int, bool, str]:
    """(code, is_last, text) of one reply line (RFC 5321 section 4.2: "250-..." continues)."""
    if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-"):
        raise SmtpProtocolError(f"malformed reply line {line[:80]!r}")
    return int(line[:3]), line[3:4] != b"-", line[4:].decode("utf-8", "replace")


def dot_stuff(body: bytes) -> bytes:
    """The message as DATA content: CRLF line endings, leading dots doubled, the end marker
    appended (RFC 5321 sections 4.1.1.4 and 4.5.2)."""
    if b"\n" in body.replace(b"\r\n", b"") or b"\r" in body.replace(b"\r\n", b""):
        body = _LINE_ENDINGS.sub(b"\r\n", body)
    if body.startswith(b"."):
        body = b"." + body
    body = body.replace(b"\r\n.", b"\r\n..")
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


class _ReplyReader(asyncio.Protocol):
    """Splits what the server sends into replies, queued until read."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.error: SmtpError | None = None
        self._buf = bytearray()
        self._lines: list[str] = []
        self._replies: collections.deque[Reply] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._paused = False
        self.closed: asyncio.Future[None] = loop.create_future()

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buf += data
        start = 0
        while (end := self._buf.find(b"\n", start)) != -1:
            line = bytes(self._buf[start:end]).rstrip(b"\r")
            start = end + 1
            if not self._line(line):
                return
        del self._buf[:start]
        if len(self._buf) > MAX_LINE:
            self._fail(SmtpProtocolError("reply line too long"))

    def _line(self, line: bytes) -> bool:
        try:
            code, last, text = parse_line(line)
        except SmtpProtocolError as exc:
            self._fail(exc)
            return False
        self._lines.append(text)
        if len(self._lines) > MAX_LINES:
            self._fail(SmtpProtocolError("reply has too many lines"))
            return False
        if last:
            self._replies.append(Reply(code, "\n".join(self._lines)))
            self._lines = []
            self._wake()
        return True

    def eof_received(self) -> bool:
        self._fail(SmtpDisconnected("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        detail = f": {exc}" if exc else ""
        self._fail(SmtpDisconnected(f"connection lost{detail}"), close=False)
        self.resume_writing()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # used by the client
    @property
    def buffered(self) -> bool:
        """Anything received but not read (e.g. injected after a STARTTLS reply)."""
        return bool(self._buf or self._lines or self._replies)

    async def reply(self, timeout: float) -> Reply:
        while not self._replies:
            if self.error is not None:
                raise self.error
            self._waiter = self.loop.create_future()
            await self._wait(self._waiter, timeout, "a reply")
        return self._replies.popleft()

    async def drain(self, timeout: float) -> None:
        if self._paused and self.error is None:
            self._drain = self.loop.create_future()
            await self._wait(self._drain, timeout, "the server to read")
        if self.error is not None:
            raise self.error

    async def _wait(self, future: asyncio.Future[None], timeout: float, what: str) -> None:
        timer = self.loop.call_later(timeout, self._timeout, future, what, timeout)
        try:
            await future
        finally:
            timer.cancel()

    def _timeout(self, future: asyncio.Future[None], what: str, timeout: float) -> None:
        if not future.done():  # replies may now be out of step: the session is over
            self._fail(SmtpTimeout(f"timed out after {timeout:g}s waiting for {what}"))

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: SmtpError, *, close: bool = True) -> None:
        if self.error is None:
            self.error = exc
        for future in (self._waiter, self._drain):
            if future is not None and not future.done():
                future.set_result(None)  # the reader raises self.error
        if close and self.transport is not None:
            self.transport.abort()


class SmtpClient:
    """One SMTP connection. Commands raise SmtpError subclasses when the connection is unusable;
    a reply, whatever its code, is returned to the caller to judge."""

    def __init__(self, reader: _ReplyReader, *, timeout: float) -> None:
        self._reader = reader
        self.timeout = timeout
        self.extensions: dict[str, str] = {}
        self.tls = False

    @classmethod
    async def connect(
        cls, host: str, port: int, *, timeout: float, connect_timeout: float,
        source_address: tuple[str, int] | None = None,
    ) -> tuple[SmtpClient, Reply]:
        """Connect and read the greeting; (client, greeting) whatever the greeting's code."""
        loop = asyncio.get_running_loop()
        try:
            _, reader = await asyncio.wait_for(loop.create_connection(
                lambda: _ReplyReader(loop), host, port, local_addr=source_address), connect_timeout)
        except TimeoutError as exc:
            raise SmtpTimeout(f"timed out after {connect_timeout:g}s connecting to {host}:{port}") from exc
        except OSError as exc:
            raise SmtpConnectError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
        client = cls(reader, timeout=timeout)
        try:
            greeting = await reader.reply(connect_timeout)
        except SmtpError:
            client.close()
            raise
        return client, greeting

    @property
    def is_connected(self) -> bool:
        t = self._reader.transport
        return self._reader.error is None and t is not None and not t.is_closing()

    def supports(self, extension: str) -> bool:
        return extension.upper() in self.extensions

    async def command(self, line: bytes) -> Reply:
        self._write(line + b"\r\n")
        return await self._reader.reply(self.timeout)

    async def hello(self, name: str) -> Reply:
        """EHLO, and HELO when EHLO is refused (RFC 5321 section 4.1.4); raises SmtpReplyError
        when neither is accepted."""
        reply = await self.command(b"EHLO " + name.encode("idna" if not name.isascii() else "ascii"))
        if reply.code == 250:
            self.extensions = _extensions(reply.text)
            return reply
        self.extensions = {}
        if 500 <= reply.code < 600:
            reply = await self.command(b"HELO " + name.encode("ascii", "replace"))
            if reply.code == 250:
                return reply
        raise SmtpReplyError(reply)

    async def starttls(self, context: ssl.SSLContext, server_hostname: str) -> Reply:
        """STARTTLS; on 220 the handshake. Returns a refusal without raising (the caller decides)."""
        reply = await self.command(b"STARTTLS")
        if reply.code != 220:
            return reply
        if self._reader.buffered:
            # RFC 3207 section 5 (and CVE-2011-0411): nothing may be read before the handshake.
            self.close()
            raise SmtpProtocolError("the server sent data after its STARTTLS reply")
        loop = asyncio.get_running_loop()
        assert self._reader.transport is not None
        try:
            transport = await loop.start_tls(
                self._reader.transport, self._reader, context, server_hostname=server_hostname,
                ssl_handshake_timeout=self.timeout)
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as exc:
            self.close()
            if isinstance(exc, TimeoutError):
                raise SmtpTimeout(f"TLS handshake timed out after {self.timeout:g}s") from exc
            raise SmtpDisconnected(f"TLS handshake failed: {exc}") from exc
        if transport is None:
            raise SmtpDisconnected("connection lost during the TLS handshake")
        self._reader.transport = transport  # type: ignore[assignment]
        self.tls = True
        self.extensions = {}  # section 4.2: forget what was learnt before; EHLO again
        return reply

    async def transaction(self, mail: bytes, rcpts: Sequence[bytes], body: bytes) -> TransactionReplies:
        """One transaction (see `transactions`); raises the error that broke the session."""
        done, error = await self.transactions([(mail, rcpts, body)])
        if error is not None:
            raise error
        return done[0]

    async def transactions(
        self, items: Sequence[tuple[bytes, Sequence[bytes], bytes]],
    ) -> tuple[list[TransactionReplies], SmtpError | None]:
        """Transactions in order on this connection; the replies of those completed, and the
        error that broke the session before the rest completed (None when all did).

        With PIPELINING (RFC 2920 section 3.1) MAIL, RCPTs and DATA go in one write, and a
        message's content, the RSET ending a refused transaction and the next MAIL/RCPT/DATA
        group go in the next: one write and one wait per message. A transaction refused before
        its content is left open only when it is the last (the caller RSETs it)."""
        done: list[TransactionReplies] = []
        if not items:
            return done, None
        try:
            if not self.supports("PIPELINING"):
                for i, item in enumerate(items):
                    if i and not done[-1].sent:
                        await self._rset()
                    done.append(await self._stepwise(*item))
                return done, None
            self._write(_group(*items[0][:2]))
            for i, (mail, rcpts, body) in enumerate(items):
                after = _group(*items[i + 1][:2]) if i + 1 < len(items) else b""
                done.append(await self._pipelined(len(rcpts), body, after))
        except SmtpError as exc:
            return done, exc
        return done, None

    async def _pipelined(self, n_rcpts: int, body: bytes, after: bytes) -> TransactionReplies:
        """Read one group's replies, send its content (or end it) together with the next group."""
        mail = await self._reader.reply(self.timeout)
        rcpts = [await self._reader.reply(self.timeout) for _ in range(n_rcpts)]
        data = await self._reader.reply(self.timeout)
        accepted = mail.code == 250 and any(r.code in (250, 251) for r in rcpts)
        if data.code != 354:
            # A refused MAIL leaves no transaction open; otherwise it stays open until RSET.
            if after:
                self._write(b"RSET\r\n" + after)
                await self._reader.reply(self.timeout)  # RSET's reply; the next group follows
                return TransactionReplies(mail, rcpts, data, sent=True)
            return TransactionReplies(mail, rcpts, data, sent=mail.code != 250)
        if not accepted:
            # Section 3.1: a server that says 354 although nothing was accepted gets an empty
            # message (which it must refuse); that ends the transaction.
            self._write(b".\r\n" + after)
            await self._reader.reply(self.timeout)
            return TransactionReplies(mail, rcpts, Reply(554, "5.5.1 no valid recipients"), sent=True)
        self._write(dot_stuff(body) + after)
        await self._reader.drain(self.timeout)
        final = await self._reader.reply(self.timeout)
        return TransactionReplies(mail, rcpts, final, sent=True)

    async def _stepwise(self, mail: bytes, rcpts: Sequence[bytes], body: bytes) -> TransactionReplies:
        """Without PIPELINING: each command waits for its reply (RFC 5321 section 4.3)."""
        mail_reply = await self.command(mail)
        if mail_reply.code != 250:
            return TransactionReplies(mail_reply, [mail_reply] * len(rcpts), None, sent=True)
        rcpt_replies = [await self.command(r) for r in rcpts]
        if not any(r.code in (250, 251) for r in rcpt_replies):
            return TransactionReplies(mail_reply, rcpt_replies, None)
        data = await self.command(b"DATA")
        if data.code != 354:
            return TransactionReplies(mail_reply, rcpt_replies, data)
        self._write(dot_stuff(body))
        await self._reader.drain(self.timeout)
        final = await self._reader.reply(self.timeout)
        return TransactionReplies(mail_reply, rcpt_replies, final, sent=True)

    async def _rset(self) -> None:
        reply = await self.command(b"RSET")
        if reply.code != 250:
            self.close()
            raise SmtpDisconnected(f"RSET refused: {reply}")

    async def quit(self, *, linger: float = 2.0) -> None:
        """QUIT and close; waits (up to `linger`) until the socket is closed, which over TLS
        takes a close_notify exchange (RFC 8446 section 6.1), then drops it."""
        try:
            if self.is_connected:
                await self.command(b"QUIT")
        except SmtpError:
            pass
        finally:
            self.close()
        closed = self._reader.closed
        if not closed.done():
            try:
                await asyncio.wait_for(asyncio.shield(closed), linger)
            except TimeoutError:
                if self._reader.transport is not None:
                    self._reader.transport.abort()

    def close(self) -> None:
        t = self._reader.transport
        if t is not None and not t.is_closing():
            t.close()
        if self._reader.error is None:
            self._reader.error = SmtpDisconnected("the connection is closed")

    def _write(self, data: bytes) -> None:
        if self._reader.error is not None:
            raise self._reader.error
        assert self._reader.transport is not None
        self._reader.transport.write(data)


def _group(mail: bytes, rcpts: Sequence[bytes]) -> bytes:
    return b"".join([mail, b"\r\n", *(r + b"\r\n" for r in rcpts), b"DATA\r\n"])


def _extensions(ehlo_text: str) -> dict[str, str]:
    """Keyword -> parameters from an EHLO reply's lines after the first (RFC 5321 section 4.1.1.1)."""
    out: dict[str, str] = {}
    for line in ehlo_text.split("\n")[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            out[keyword.upper()] = params
    return out
