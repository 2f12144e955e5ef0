"""aiosmtpd hooks: each SMTP stage asks the policy flow, then answers with a named reply."""

from __future__ import annotations

import asyncio
import binascii
import logging
import time
import uuid
from base64 import b64decode
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, AnyStr, TypeVar

from aiosmtpd.smtp import SMTP, AuthResult
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession

from appliance.config.schema import Listener
from appliance.policy.flow import DataResult, Decision, Flow, SessionInfo, Verdict
from appliance.queue.intake import Intake
from appliance.smtp import replies
from appliance.smtp.fastinit import Members, fast_init, simple_path
from appliance.smtp.limits import SessionLimits
from appliance.stats.metrics import Instruments
from appliance.smtp.message import (
    command_problem, crlf_lines, edit_headers, has_bare_newline, is_address, protocol_name, received_header,
    relayed_from, subject_of,
)
from appliance.types import Envelope, NewMessage, Note, QueueState

log = logging.getLogger(__name__)

# (user, password, client address) -> whether they are right, or the reply refusing unchecked
Authenticate = Callable[[str, str, str], Awaitable[bool | str]]
T = TypeVar("T")


class MessageEnvelope(SmtpEnvelope):
    """aiosmtpd's envelope plus what the policy decided for this message."""

    def __init__(self) -> None:
        super().__init__()
        self.sender = ""  # the real reverse-path ('' for <>); mail_from holds '<>' then
        self.transport = ""
        self.transports: dict[str, str] = {}
        self.deleted: list[str] = []
        self.quarantine = ""
        self.delete_all = False
        self.notes: list[Note] = []  # policy decisions of this transaction, for the timeline


class ClientSession(SmtpSession):
    """aiosmtpd's session plus the flow's view of it and connect-level decisions."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.info = SessionInfo(listener="", client_ip="")
        self.quarantine = ""
        self.delete_all = False
        self.notes: list[Note] = []  # connect-stage decisions, for every message's timeline


def _help_of(base: Callable[..., Any]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Keep the @syntax text aiosmtpd's HELP shows for a command this class overrides."""
    def keep(method: Callable[..., T]) -> Callable[..., T]:
        method.__dict__.update(base.__dict__)
        return method
    return keep


def _reason(reply: str) -> str:
    """`554 5.7.1` of `554 5.7.1 Relay access denied`: the code and enhanced status (RFC 3463)."""
    parts = reply.split(" ", 2)
    if len(parts) > 1 and parts[1][:1].isdigit() and parts[1].count(".") == 2:
        return f"{parts[0][:3]} {parts[1]}"
    return reply[:3]


class Protocol(SMTP):
    """One connection. Adds the connect-stage verdict and our session/envelope types."""

    event_handler: Handler
    limits: SessionLimits | None = None  # set by the listener's protocol factory
    _refusal = ""

    def __init__(self, handler: Handler, *, members: Members | None = None, **options: Any) -> None:
        if members is None:
            super().__init__(handler, **options)
        else:  # the listener's later connections: skip aiosmtpd's introspection (fastinit)
            fast_init(self, handler, members, **options)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        fast = simple_path(arg, self.local_part_limit)
        return super()._getaddr(arg) if fast is None else fast

    def _create_session(self) -> ClientSession:
        return ClientSession(self.loop)

    def _create_envelope(self) -> MessageEnvelope:
        return MessageEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        before = self.session
        if before is None:
            if self.limits is not None:
                self._refusal = self.limits.opened(self, transport)
        super().connection_made(transport)
        metrics = self.event_handler.metrics
        if before is None and metrics is not None:
            metrics.smtp_sessions.labels(self.event_handler.listener.id).inc()
        if isinstance(before, ClientSession) and isinstance(self.session, ClientSession):
            # STARTTLS made a fresh session (RFC 3207 §4.2: forget HELO and AUTH); the client
            # and the connect-stage decisions stay.
            info = before.info
            info.tls, info.helo, info.sasl, info.authenticated = True, "", "", False
            info.sender, info.recipients = None, []
            self.session.info = info
            self.session.quarantine = before.quarantine
            self.session.delete_all = before.delete_all
            self.session.notes = before.notes

    async def push(self, status: AnyStr) -> None:
        """Every reply goes out here: 4xx and 5xx are counted by their code (the reason)."""
        metrics = self.event_handler.metrics
        if metrics is not None:
            text = status if isinstance(status, str) else status.decode("ascii", "replace")
            if text[:1] in ("4", "5"):
                metrics.smtp_rejects.labels(self.event_handler.listener.id, _reason(text)).inc()
        await super().push(status)

    def connection_lost(self, error: Exception | None) -> None:
        if self.limits is not None:
            self.limits.closed(self)
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        if self.limits is not None and b"\n" in data:
            self.limits.heard(self)
        super().data_received(data)

    @_help_of(SMTP.smtp_EHLO)
    async def smtp_EHLO(self, hostname: str) -> None:
        if not await self._refused_at_door(hostname):
            await super().smtp_EHLO(hostname)

    @_help_of(SMTP.smtp_HELO)
    async def smtp_HELO(self, hostname: str) -> None:
        if not await self._refused_at_door(hostname):
            await super().smtp_HELO(hostname)

    @_help_of(SMTP.smtp_MAIL)
    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self._refused_at_door(arg):
            return
        if arg is not None and not _balanced_path(arg, "FROM:"):
            await self.push(replies.BAD_PATH_SYNTAX)
            return
        await super().smtp_MAIL(arg)

    @_help_of(SMTP.smtp_RCPT)
    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self._refused_at_door(arg):
            return
        if arg is not None and not _balanced_path(arg, "TO:"):
            await self.push(replies.BAD_PATH_SYNTAX)
            return
        await super().smtp_RCPT(arg)

    async def _refused_at_door(self, arg: str | None) -> bool:
        """Answer 501 to an argument with control bytes or non-UTF-8 bytes (RFC 5321 §4.1.2)."""
        problem = command_problem(arg) if arg else None
        if problem is None:
            return False
        await self.push(replies.CONTROL_CHARACTERS if problem == "control" else replies.NOT_UTF8)
        return True

    async def _handle_client(self) -> None:
        if self._refusal:  # over a connection cap: 421 at once (RFC 5321 section 3.8)
            await self.push(self._refusal)
            if self.transport is not None:
                self.transport.close()
            return
        try:
            reply = await self.event_handler.on_connect(self)
        except Exception:
            log.exception("connect stage failed")
            reply = replies.SERVICE_UNAVAILABLE
        if reply is not None:
            await self.push(reply)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()


class Handler:
    """The hooks of one listener. Shared by its connections; per-connection state is on
    the session and the envelope."""

    def __init__(self, *, listener: Listener, hostname: str, flow: Flow, intake: Intake,
                 authenticate: Authenticate, on_enqueued: Callable[[], None],
                 clock: Callable[[], float] = time.time,
                 flow_threads: Executor | None = None, metrics: Instruments | None = None) -> None:
        self.listener = listener
        self.metrics = metrics
        self.hostname = hostname
        self.flow = flow
        self.intake = intake
        self.authenticate = authenticate
        self.on_enqueued = on_enqueued
        self.clock = clock
        self.flow_threads = flow_threads

    async def _ask(self, stage: Callable[..., T], *args: Any) -> T:
        """One policy stage. With `flow_threads` (a listener running a script) it runs there, so
        a slow script, or its http()/mail()/rate() calls, does not stall the other sessions;
        this session awaits it, so its stages still run one after the other, in order."""
        if self.flow_threads is None:
            return stage(*args)
        return await asyncio.get_running_loop().run_in_executor(self.flow_threads, stage, *args)

    async def handle_exception(self, error: Exception) -> str:
        """A hook or flow failed: a temporary reply, never internals and never 5xx."""
        log.error("SMTP session error: %s: %s", type(error).__name__, error)
        return replies.LOCAL_ERROR

    # -- connection and greeting -------------------------------------------------------
    async def on_connect(self, server: Protocol) -> str | None:
        session: ClientSession = server.session  # type: ignore[assignment]
        peer = session.peer if isinstance(session.peer, tuple) else ("", 0)
        session.info = SessionInfo(listener=self.listener.id, client_ip=str(peer[0]),
                                   client_port=int(peer[1]))
        verdict = await self._ask(self.flow.connect, session.info)
        _note(session.notes, "connect", verdict, self.clock())
        if verdict.decision is Decision.REJECT:
            return replies.verdict_reply(verdict.code, verdict.text, replies.CONNECT_REJECTED)
        if verdict.decision is Decision.DEFER:
            return replies.verdict_reply(verdict.code, verdict.text, replies.SERVICE_UNAVAILABLE)
        session.quarantine = _quarantine_name(verdict) if verdict.decision is Decision.QUARANTINE else ""
        session.delete_all = verdict.decision is Decision.DELETE
        return None

    async def handle_EHLO(self, server: Protocol, session: ClientSession, envelope: Any,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        session.info.helo = hostname
        if not self.listener.auth:
            responses = [r for r in responses if not r[4:].startswith("AUTH")]
        return responses

    async def handle_HELO(self, server: Protocol, session: ClientSession, envelope: Any,
                          hostname: str) -> str:
        session.host_name = hostname
        session.info.helo = hostname
        return f"250 {self.hostname}"

    # -- AUTH (RFC 4954): our own PLAIN and LOGIN so the slow password check runs in a thread
    async def auth_PLAIN(self, server: Protocol, args: list[str]) -> AuthResult:
        raw: object
        if len(args) == 1:
            raw = await server.challenge_auth("")
            if not isinstance(raw, bytes):  # aborted: challenge_auth has answered 501
                return AuthResult(success=False)
        else:
            raw = _b64(args[1])
            if not isinstance(raw, bytes):
                return AuthResult(success=False, handled=False, message=replies.AUTH_BAD_BASE64)
        parts = raw.split(b"\x00")
        if len(parts) != 3:  # authzid NUL authcid NUL passwd (RFC 4616 §2)
            return AuthResult(success=False, handled=False, message=replies.AUTH_MALFORMED)
        return await self._login(server, parts[1], parts[2])

    async def auth_LOGIN(self, server: Protocol, args: list[str]) -> AuthResult:
        login: object
        if len(args) == 1:
            login = await server.challenge_auth(server.AuthLoginUsernameChallenge)
        else:
            login = _b64(args[1])
            if login is None:
                return AuthResult(success=False, handled=False, message=replies.AUTH_BAD_BASE64)
        if not isinstance(login, bytes):
            return AuthResult(success=False)
        password = await server.challenge_auth(server.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False)
        return await self._login(server, login, password)

    async def _login(self, server: Protocol, login: bytes, password: bytes) -> AuthResult:
        session: ClientSession = server.session  # type: ignore[assignment]
        name = login.decode("utf-8", errors="replace")
        secret = password.decode("utf-8", errors="replace")
        verdict = await self._ask(self.flow.auth, session.info, name, secret)
        if verdict is None:
            checked = await self.authenticate(name, secret, session.info.client_ip)
            if isinstance(checked, str):  # throttled: refused without checking
                return AuthResult(success=False, handled=False, message=checked)
            ok = checked
        elif verdict.decision is Decision.DEFER:
            return AuthResult(success=False, handled=False, message=replies.verdict_reply(
                verdict.code, verdict.text, replies.AUTH_TEMPORARY))
        else:
            ok = verdict.decision is Decision.ACCEPT
        log.info("auth %s from [%s] as %r", "ok" if ok else "failed", session.info.client_ip, name)
        if not ok:
            return AuthResult(success=False, handled=False, message=replies.AUTH_INVALID)
        session.info.sasl = name
        session.info.authenticated = True
        return AuthResult(success=True, auth_data=name, message=replies.AUTH_OK)

    # -- envelope ----------------------------------------------------------------------
    async def handle_MAIL(self, server: Protocol, session: ClientSession,
                          envelope: MessageEnvelope, address: str, options: list[str]) -> str:
        if self.listener.require_auth and not session.authenticated:
            return replies.AUTH_REQUIRED
        sender = "" if address == "<>" else address
        if sender and not is_address(sender):
            return replies.BAD_SENDER_ADDRESS
        if not sender.isascii() and not envelope.smtp_utf8:
            return replies.SENDER_NEEDS_SMTPUTF8
        session.info.sender = sender
        session.info.recipients = []
        verdict = await self._ask(self.flow.mail_from, session.info, sender)
        reply = _envelope_reply(verdict, replies.MAIL_REJECTED, replies.MAIL_DEFERRED)
        if reply is not None:
            session.info.sender = None
            return reply
        envelope.notes = []
        _note(envelope.notes, "mail_from", verdict, self.clock())
        envelope.mail_from = address  # '<>' stays truthy, so aiosmtpd refuses a nested MAIL
        envelope.mail_options.extend(options)
        envelope.sender = sender
        envelope.transport = verdict.transport
        envelope.quarantine = session.quarantine or (
            _quarantine_name(verdict) if verdict.decision is Decision.QUARANTINE else "")
        envelope.delete_all = session.delete_all or verdict.decision is Decision.DELETE
        return replies.SENDER_OK

    async def handle_RCPT(self, server: Protocol, session: ClientSession,
                          envelope: MessageEnvelope, address: str, options: list[str]) -> str:
        if not is_address(address):
            return replies.BAD_RECIPIENT_ADDRESS
        if not address.isascii() and not envelope.smtp_utf8:
            return replies.RECIPIENT_NEEDS_SMTPUTF8
        if len(envelope.rcpt_tos) >= self.listener.max_recipients:
            return replies.TOO_MANY_RECIPIENTS
        verdict = await self._ask(self.flow.rcpt_to, session.info, address)
        reply = _envelope_reply(verdict, replies.RCPT_REJECTED, replies.RCPT_DEFERRED)
        _note(envelope.notes, "rcpt_to", verdict, self.clock(), rcpt=address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        session.info.recipients.append(address)
        if verdict.transport:
            envelope.transports[address] = verdict.transport
        if verdict.decision is Decision.QUARANTINE and not envelope.quarantine:
            envelope.quarantine = _quarantine_name(verdict)
        if verdict.decision is Decision.DELETE:
            envelope.deleted.append(address)
        return replies.RECIPIENT_OK

    async def handle_RSET(self, server: Protocol, session: ClientSession, envelope: Any) -> str:
        session.info.sender = None
        session.info.recipients = []
        return replies.OK

    # -- DATA --------------------------------------------------------------------------
    async def handle_DATA(self, server: Protocol, session: ClientSession,
                          envelope: MessageEnvelope) -> str:
        msgid = str(uuid.uuid4())
        try:
            return await self._receive(server, session, envelope, msgid)
        except Exception as exc:  # any failure to store: 451, never 250 (RFC 5321 §4.2.5)
            log.error("not accepted %s from [%s]: %s: %s", msgid, session.info.client_ip,
                      type(exc).__name__, exc)
            return replies.STORE_FAILED
        finally:
            session.info.sender = None
            session.info.recipients = []

    async def _receive(self, server: Protocol, session: ClientSession,
                       envelope: MessageEnvelope, msgid: str) -> str:
        content: bytes = envelope.original_content or b""
        if has_bare_newline(content):
            if not session.info.mynetwork:
                log.info("refused %s from [%s]: bare CR or LF", msgid, session.info.client_ip)
                return replies.BARE_NEWLINE
            content = crlf_lines(content)  # a trusted host's script: lines as it meant them
        result: DataResult = await self._ask(self.flow.data, session.info, content)
        verdict = result.verdict
        if verdict.decision is Decision.REJECT:
            log.info("rejected %s from [%s]: %s", msgid, session.info.client_ip, verdict.text)
            return replies.verdict_reply(verdict.code, verdict.text, replies.DATA_REJECTED)
        if verdict.decision is Decision.DEFER:
            log.info("deferred %s from [%s]: %s", msgid, session.info.client_ip, verdict.text)
            return replies.verdict_reply(verdict.code, verdict.text, replies.DATA_DEFERRED)
        message, body, deleted = self._build(server, session, envelope, msgid, content, result)
        # shield: a client vanishing now must not abandon a commit already under way.
        accepted = await asyncio.shield(self.intake.submit_async(message, body, deleted=deleted))
        self.on_enqueued()
        pairs = " ".join(f"{msgid}:{qid} <{rcpt}>" for qid, rcpt in
                         zip(accepted.queue_ids, message.envelope.recipients))
        log.info("accepted %s from <%s> [%s] helo=%s sasl=%s size=%d state=%s: %s%s", msgid,
                 message.envelope.sender, message.envelope.client_ip, message.envelope.helo,
                 message.envelope.sasl, message.size, message.state.value, pairs,
                 f" deleted: {' '.join(accepted.deleted)}" if accepted.deleted else "")
        return replies.QUEUED.format(msgid=msgid)

    def _build(self, server: Protocol, session: ClientSession, envelope: MessageEnvelope,
               msgid: str, content: bytes, result: DataResult,
               ) -> tuple[NewMessage, bytes | None, tuple[str, ...]]:
        verdict = result.verdict
        now = self.clock()
        recipients = tuple(envelope.rcpt_tos)
        delete_all = envelope.delete_all or verdict.decision is Decision.DELETE
        deleted = recipients if delete_all else tuple(r for r in recipients if r in envelope.deleted)
        kept = tuple(r for r in recipients if r not in deleted)
        quarantine = envelope.quarantine or (
            _quarantine_name(verdict) if verdict.decision is Decision.QUARANTINE else "")
        info = session.info
        tls = bool(info.tls or session.ssl is not None)
        upstream = relayed_from(content)
        notes = [Note(kind="received", ts=now, ref=upstream, detail={
            "client": info.client_ip, "helo": info.helo, "sasl": info.sasl,
            "tls": "yes" if tls else "no", "listener": self.listener.id, "sender": envelope.sender,
            "recipients": str(len(recipients)), "size": str(len(content)),
            **({"relayed_from": upstream} if upstream else {})})]
        notes += session.notes + envelope.notes
        _note(notes, "data", verdict, now)
        trace = received_header(
            helo=info.helo, client_ip=info.client_ip, hostname=self.hostname, msgid=msgid,
            protocol=protocol_name(esmtp=session.extended_smtp, tls=session.ssl is not None,
                                   authenticated=bool(info.authenticated)),
            recipients=recipients, when=now,
        )
        body = trace + edit_headers(content, add=result.add_headers, remove=result.remove_headers)
        transports = {**envelope.transports, **result.recipient_transports}
        message = NewMessage(
            msgid=msgid,
            envelope=Envelope(sender=envelope.sender, recipients=kept, listener=self.listener.id,
                              client_ip=info.client_ip, helo=info.helo, sasl=info.sasl, tls=tls),
            path="", size=len(body), subject=subject_of(content), received=now,
            transport=verdict.transport or envelope.transport or self.listener.transport,
            transports=transports,
            state=QueueState.HOLD if quarantine else QueueState.ACTIVE,
            quarantine=quarantine, metadata=dict(result.metadata), notes=tuple(notes),
        )
        return message, (body if kept else None), deleted


def _balanced_path(arg: str, keyword: str) -> bool:
    """An angle-bracketed path must be closed (RFC 5321 §4.1.2: Path = "<" ... ">")."""
    rest = arg[len(keyword):].strip() if arg[:len(keyword)].upper() == keyword else arg
    if not rest.startswith("<"):
        return True
    end = rest.find(">")
    return end != -1 and "<" not in rest[1:end]


def _envelope_reply(verdict: Verdict, rejected: str, deferred: str) -> str | None:
    if verdict.decision is Decision.REJECT:
        return replies.verdict_reply(verdict.code, verdict.text, rejected)
    if verdict.decision is Decision.DEFER:
        return replies.verdict_reply(verdict.code, verdict.text, deferred)
    return None


def _note(notes: list[Note], stage: str, verdict: Verdict, now: float, *, rcpt: str = "") -> None:
    """A policy script's decision at one stage, for the message's timeline."""
    if not verdict.script:
        return
    detail = {"script": verdict.script, "stage": stage, "decision": verdict.decision.value}
    extra = {"code": str(verdict.code) if verdict.code else "", "reason": verdict.text,
             "quarantine": verdict.quarantine, "transport": verdict.transport, "rcpt": rcpt,
             "rates": ", ".join(verdict.rates)}
    detail.update({k: v for k, v in extra.items() if v})
    notes.append(Note(kind="policy", ts=now, detail=detail))


def _quarantine_name(verdict: Verdict) -> str:
    return verdict.quarantine or "quarantine"


def _b64(text: str) -> bytes | None:
    try:
        return b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None

