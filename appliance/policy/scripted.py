"""ScriptedFlow: the Flow protocol answered by one Lua policy script, with a safe default per flow.

Safe defaults when a script fails (raises, does not compile, runs out of instructions or
memory, or returns something that is not a decision) -- chosen so a broken policy never lets
mail through unchecked and never loses or permanently refuses it (senders retry a 4xx):

- connect: accept. Refusing every connection would take the listener down for a script bug;
  MAIL/RCPT/DATA still defer if their handlers fail too.
- auth: 454 4.7.0 temporary authentication failure (RFC 4954 §6). Not "fall through to the
  node's users": the script may exist to refuse some of them.
- mail_from, rcpt_to, data: defer 451 4.3.0 (RFC 5321 §4.2.5 "local error in processing").
- pre_delivery: defer; the entry is retried on its schedule.
- post_delivery: nothing (the outcome is already recorded); the error is logged.

A flow with no handler in the script behaves as DefaultFlow for that stage. Decisions pass to
the SMTP layer as they are: quarantine/delete at connect or MAIL apply to the whole
transaction, at RCPT to that recipient; deliver(transport) at MAIL/RCPT/DATA routes the
message (or that recipient) via the transport.
"""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appliance.policy.flow import (
    ACCEPT, DataResult, Decision, DeliveryInfo, DeliveryOutcome, SessionInfo, Verdict,
)
from appliance.policy.functions import Bindings, Functions, RunContext
from appliance.policy.sandbox import Limits, Sandbox, ScriptError, to_lua

if TYPE_CHECKING:
    from appliance.stats.metrics import Instruments

log = logging.getLogger(__name__)

SAFE_DEFAULTS: dict[str, Verdict | None] = {
    "connect": ACCEPT,
    "auth": Verdict(decision=Decision.DEFER, code=454, text="4.7.0 Temporary authentication failure"),
    "mail_from": Verdict(decision=Decision.DEFER, code=451, text="4.3.0 Policy temporarily unavailable"),
    "rcpt_to": Verdict(decision=Decision.DEFER, code=451, text="4.3.0 Policy temporarily unavailable"),
    "data": Verdict(decision=Decision.DEFER, code=451, text="4.3.0 Policy temporarily unavailable"),
    "pre_delivery": Verdict(decision=Decision.DEFER, code=451, text="4.3.0 Policy script failed"),
    "post_delivery": None,
}
# Which decisions each flow may return (see module docstring for what the others mean).
ALLOWED: dict[str, frozenset[str]] = {
    "connect": frozenset({"accept", "reject", "defer", "quarantine", "delete"}),
    "auth": frozenset({"accept", "reject", "defer"}),
    "mail_from": frozenset({"accept", "reject", "defer", "quarantine", "delete", "deliver"}),
    "rcpt_to": frozenset({"accept", "reject", "defer", "quarantine", "delete", "deliver"}),
    "data": frozenset({"accept", "reject", "defer", "quarantine", "delete", "deliver"}),
    "pre_delivery": frozenset({"accept", "reject", "defer", "quarantine", "delete", "deliver"}),
    "post_delivery": frozenset(),
}
_DEFAULT_CODES = {"reject": 550, "defer": 451}


def to_verdict(flow: str, value: Any) -> Verdict | None:
    """A handler's return value as a Verdict (None = the flow's pass-through); ScriptError if invalid."""
    if value is None:
        return None
    if not isinstance(value, dict) or "decision" not in value:
        raise ScriptError(f"{flow} must return accept(), reject(...), defer(...), ... or nothing")
    name = value["decision"]
    if name not in ALLOWED[flow]:
        raise ScriptError(f"{flow} may not return {name}()")
    code = value.get("code") or _DEFAULT_CODES.get(name, 0)
    if name in _DEFAULT_CODES and (not isinstance(code, int) or code // 100 != (5 if name == "reject" else 4)):
        raise ScriptError(f"{name}() needs a {'5' if name == 'reject' else '4'}xx code, not {code!r}")
    text = value.get("text") or ""
    if not isinstance(text, str) or "\r" in text or "\n" in text:
        raise ScriptError(f"{name}() text must be one line")
    transport = value.get("transport") or ""
    if name == "deliver" and not transport and not value.get("nexthop"):
        raise ScriptError("deliver() needs a transport id or a nexthop")
    return Verdict(decision=Decision(name), code=code if name in _DEFAULT_CODES else 0, text=text,
                   quarantine=str(value.get("quarantine") or ""), transport=str(transport),
                   nexthop=str(value.get("nexthop") or ""), source_ip=str(value.get("source_ip") or ""))


def session_vars(session: SessionInfo) -> dict[str, Any]:
    return {
        "listener": session.listener, "client_ip": session.client_ip, "client_port": session.client_port,
        "helo": session.helo, "sasl": session.sasl, "authenticated": session.authenticated,
        "tls": session.tls, "sender": session.sender, "recipients": list(session.recipients),
    }


def message_table(message: bytes) -> dict[str, Any]:
    """Headers (unfolded, in order) and body, as the data handler sees them."""
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = message.partition(b"\n\n")
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head + b"\r\n\r\n")
    headers = [{"name": k, "value": str(v).replace("\r\n", "").replace("\n", "")} for k, v in parsed.items()]
    subject = next((h["value"] for h in headers if h["name"].lower() == "subject"), "")
    return {"headers": headers, "body": body, "size": len(message), "subject": subject}


class ScriptedFlow:
    """One script, compiled once into a small pool of sandboxes (one per concurrent caller)."""

    def __init__(self, text: str, *, name: str, functions: Functions,
                 limits: Limits = Limits(), max_idle: int = 8,
                 metrics: Instruments | None = None) -> None:
        self.name = name
        self.metrics = metrics
        self.text = text
        self.functions = functions
        self.limits = limits
        self._max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: list[tuple[Sandbox, Bindings]] = []
        first = self._build()  # compile errors surface here, at config time
        self.handlers = first[0].handlers
        self._idle.append(first)

    def _build(self) -> tuple[Sandbox, Bindings]:
        bindings = Bindings(self.functions, script=self.name)
        sandbox = Sandbox(self.text, name=self.name, limits=self.limits, functions=bindings.table(),
                          deadline=bindings.deadline)
        bindings.to_lua = lambda value: to_lua(sandbox.runtime, value)
        return sandbox, bindings

    def run(self, flow: str, ctx: RunContext, *args: Any, extra_memory: int = 0) -> Any:
        """Run handler `flow`; raise ScriptError on any failure (callers apply the safe default)."""
        if self.metrics is None:
            return self._run(flow, ctx, *args, extra_memory=extra_memory)
        self.metrics.policy_runs.labels(flow).inc()
        started = time.perf_counter()
        try:
            return self._run(flow, ctx, *args, extra_memory=extra_memory)
        except ScriptError:
            self.metrics.policy_errors.labels(flow).inc()
            raise
        finally:
            self.metrics.policy_seconds.labels(flow).observe(time.perf_counter() - started)

    def _run(self, flow: str, ctx: RunContext, *args: Any, extra_memory: int = 0) -> Any:
        with self._lock:
            pair = self._idle.pop() if self._idle else None
        sandbox, bindings = pair if pair is not None else self._build()
        try:
            with sandbox.lock:
                bindings.ctx = ctx
                if ctx.record_calls:
                    sandbox.record(True)
                try:
                    return sandbox.call(flow, *args, extra_memory=extra_memory)
                finally:
                    if ctx.record_calls:
                        sandbox.record(False)
        finally:
            bindings.ctx = RunContext(flow="", label="")
            with self._lock:
                if len(self._idle) < self._max_idle:
                    self._idle.append((sandbox, bindings))

    def _decide(self, flow: str, ctx: RunContext, *args: Any, extra_memory: int = 0) -> Verdict | None:
        try:
            verdict = to_verdict(flow, self.run(flow, ctx, *args, extra_memory=extra_memory))
        except ScriptError as exc:
            fallback = SAFE_DEFAULTS[flow]
            log.error("policy %s %s %s failed, %s: %s", self.name, ctx.label, flow,
                      _describe(fallback), exc)
            if fallback is None:
                return None
            return dataclasses.replace(fallback, script=self.name)
        log.info("policy %s %s %s: %s", self.name, ctx.label, flow, _describe(verdict))
        if verdict is None:
            return None
        return dataclasses.replace(verdict, script=self.name, rates=tuple(ctx.rate_limited))

    # -- the Flow protocol ----------------------------------------------------------------
    def connect(self, session: SessionInfo) -> Verdict:
        if "connect" not in self.handlers:
            return ACCEPT
        return self._decide("connect", _ctx("connect", session), session_vars(session)) or ACCEPT

    def auth(self, session: SessionInfo, username: str, password: str) -> Verdict | None:
        if "auth" not in self.handlers:
            return None
        return self._decide("auth", _ctx("auth", session), session_vars(session), username, password)

    def mail_from(self, session: SessionInfo, sender: str) -> Verdict:
        session.metadata.clear()  # a new transaction (RFC 5321 §3.3) starts clean
        return self._stage("mail_from", session, sender)

    def rcpt_to(self, session: SessionInfo, recipient: str) -> Verdict:
        return self._stage("rcpt_to", session, recipient)

    def _stage(self, flow: str, session: SessionInfo, argument: str) -> Verdict:
        """MAIL/RCPT; metadata they set is kept on the session until DATA queues the message."""
        if flow not in self.handlers:
            return ACCEPT
        ctx = _ctx(flow, session)
        verdict = self._decide(flow, ctx, session_vars(session), argument) or ACCEPT
        session.metadata.update(ctx.metadata)
        return verdict

    def data(self, session: SessionInfo, message: bytes) -> DataResult:
        result = DataResult(metadata=dict(session.metadata))
        if "data" not in self.handlers:
            return result
        ctx = _ctx("data", session)
        verdict = self._decide("data", ctx, session_vars(session), message_table(message),
                               extra_memory=4 * len(message))
        result.verdict = verdict or ACCEPT
        if result.verdict.decision not in (Decision.REJECT, Decision.DEFER):
            result.add_headers, result.remove_headers = ctx.add_headers, ctx.remove_headers
            result.metadata = ctx.metadata
        return result

    def pre_delivery(self, entry: DeliveryInfo) -> Verdict:
        if "pre_delivery" not in self.handlers:
            return ACCEPT
        ctx = RunContext(flow="pre_delivery", label=f"<{entry.msgid}>:{entry.queueid}",
                         queueid=entry.queueid, msgid=entry.msgid, metadata=dict(entry.metadata))
        return self._decide("pre_delivery", ctx, entry_vars(entry)) or ACCEPT

    def post_delivery(self, entry: DeliveryInfo, outcome: DeliveryOutcome) -> None:
        if "post_delivery" not in self.handlers:
            return
        ctx = RunContext(flow="post_delivery", label=f"<{entry.msgid}>:{entry.queueid}",
                         queueid=entry.queueid, msgid=entry.msgid, metadata=dict(entry.metadata))
        self._decide("post_delivery", ctx, entry_vars(entry), dataclasses.asdict(outcome))


def entry_vars(entry: DeliveryInfo) -> dict[str, Any]:
    return dataclasses.asdict(entry)


def _ctx(flow: str, session: SessionInfo) -> RunContext:
    label = f"{session.client_ip}:{session.client_port}" if session.client_port else session.client_ip
    return RunContext(flow=flow, label=f"[{label}]", metadata=dict(session.metadata))


def _describe(verdict: Verdict | None) -> str:
    if verdict is None:
        return "no decision"
    parts = [verdict.decision.value]
    parts += [str(verdict.code)] if verdict.code else []
    parts += [repr(v) for v in (verdict.text, verdict.quarantine, verdict.transport, verdict.nexthop) if v]
    return " ".join(parts)


FlowFactory = Callable[[str, str], ScriptedFlow]
