"""scriptTest: run a script against a test message and envelope, touching no real queue or counter."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from appliance.errors import InvalidInput
from appliance.policy.flow import DeliveryInfo, DeliveryOutcome, SessionInfo
from appliance.policy.functions import Functions, HttpClient, RunContext
from appliance.policy.memory import MemoryCounters, MemoryRates
from appliance.policy.sandbox import FLOWS, Limits, ScriptError
from appliance.policy.scripted import ScriptedFlow, entry_vars, message_table, session_vars, to_verdict


# A scriptTest holds an API thread: each run (and the top level) gets at most a second of Lua
# and a few seconds of http(), and the runs of one call stop once TOTAL_SECONDS have passed.
TEST_LIMITS = Limits(seconds=1.0, http_calls=5, http_seconds=3.0)
TOTAL_SECONDS = 3.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScriptTestEnvelope:
    sender: str = ""
    recipients: Sequence[str] = ("test@example.com",)
    client_ip: str = "127.0.0.1"
    helo: str = "test.example"
    sasl: str = ""
    password: str = ""
    listener: str = "test"
    transport: str = "default"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScriptTestLine:
    kind: str  # decision | output | call | error
    text: str


class _RecordingMailer:
    def __init__(self) -> None:
        self.count = 0

    def send(self, sender: str, recipient: str, subject: str, body: str) -> str:
        self.count += 1
        return f"test-{self.count}"  # recorded by the caller's call log, never queued


class _RecordingQueue:
    def __init__(self, metric: Callable[[str, str], int] | None) -> None:
        self._metric = metric

    def set_metadata(self, queueid: int, key: str, value: str, *, msgid: str = "") -> None:
        return None  # the call is recorded in the run's call log only

    def queue_metric(self, field: str, value: str) -> int:
        return self._metric(field, value) if self._metric is not None else 0


def run_script_test(
    *, flow: str, script: str, message: bytes = b"", envelope: ScriptTestEnvelope = ScriptTestEnvelope(),
    http: HttpClient | None = None, queue_metric: Callable[[str, str], int] | None = None,
    limits: Limits = TEST_LIMITS, total_seconds: float = TOTAL_SECONDS,
) -> list[ScriptTestLine]:
    """What the script decided, printed and called, per run (rcpt_to and pre/post-delivery run per
    recipient). stat()/rate() go to fresh in-memory counters; mail() and set_metadata() are only
    recorded; http() is real (`http`) so that lookups can be tried."""
    if flow not in FLOWS:
        raise InvalidInput(f"flow must be one of {', '.join(FLOWS)}")
    if not envelope.recipients and flow in ("rcpt_to", "data", "pre_delivery", "post_delivery"):
        raise InvalidInput("the test envelope needs at least one recipient")
    functions = Functions(counters=MemoryCounters(), rates=MemoryRates(), http=http,
                          mailer=_RecordingMailer(), queue=_RecordingQueue(queue_metric))
    try:
        scripted = ScriptedFlow(script, name="scriptTest", functions=functions, limits=limits, max_idle=1)
    except ScriptError as exc:
        raise InvalidInput(str(exc)) from exc
    if flow not in scripted.handlers:
        return [ScriptTestLine(kind="decision", text=f"no {flow} handler: default")]
    lines: list[ScriptTestLine] = []
    ends = time.monotonic() + total_seconds
    for args in _runs(flow, message, envelope):
        if time.monotonic() > ends:
            spent = f"stopped: the test's {total_seconds:g} s are spent"
            lines.append(ScriptTestLine(kind="error", text=spent))
            break
        ctx = RunContext(flow=flow, label="[scriptTest]", queueid=0, record_calls=True)
        try:
            result = to_verdict(flow, scripted.run(flow, ctx, *args, extra_memory=4 * len(message)))
            decided = ScriptTestLine(kind="decision", text=_verdict_text(result))
        except ScriptError as exc:
            decided = ScriptTestLine(kind="error", text=str(exc))
        lines += [ScriptTestLine(kind="output", text=t) for t in ctx.output]
        lines += [ScriptTestLine(kind="call", text=t) for t in ctx.calls]
        lines += _changes(ctx)
        lines.append(decided)
    return lines


def _runs(flow: str, message: bytes, env: ScriptTestEnvelope) -> list[tuple[Any, ...]]:
    session = SessionInfo(listener=env.listener, client_ip=env.client_ip, helo=env.helo, sasl=env.sasl,
                          authenticated=bool(env.sasl), sender=env.sender)
    if flow == "connect":
        return [(session_vars(session),)]
    if flow == "auth":
        return [(session_vars(session), env.sasl, env.password)]
    if flow == "mail_from":
        return [(session_vars(session), env.sender)]
    if flow == "rcpt_to":
        runs = []
        for rcpt in env.recipients:
            runs.append((session_vars(session), rcpt))
            session.recipients.append(rcpt)
        return runs
    session.recipients = list(env.recipients)
    if flow == "data":
        return [(session_vars(session), message_table(message))]
    entries = [DeliveryInfo(queueid=0, msgid="scriptTest", sender=env.sender, recipient=r,
                            transport=env.transport, listener=env.listener, sasl=env.sasl, retries=0,
                            metadata={}) for r in env.recipients]
    if flow == "pre_delivery":
        return [(entry_vars(e),) for e in entries]
    outcome = DeliveryOutcome(action="DELIVER", code=250, text="2.0.0 OK", transfertime=0.1)
    return [(entry_vars(e), dataclasses.asdict(outcome)) for e in entries]


def _changes(ctx: RunContext) -> list[ScriptTestLine]:
    lines = [ScriptTestLine(kind="call", text=f"add_header({n!r}, {v!r})") for n, v in ctx.add_headers]
    return lines + [ScriptTestLine(kind="call", text=f"remove_header({n!r})") for n in ctx.remove_headers]


def _verdict_text(verdict: Any) -> str:
    if verdict is None:
        return "none (default)"
    parts = [verdict.decision.value] + ([str(verdict.code)] if verdict.code else [])
    for label in ("text", "quarantine", "transport", "nexthop", "source_ip"):
        value = getattr(verdict, label)
        if value:
            parts.append(f"{label}={value!r}")
    return " ".join(parts)
