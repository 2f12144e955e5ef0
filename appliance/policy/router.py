"""The node's Flow: each listener's script from the config, compiled once per script text."""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import TYPE_CHECKING, Any

from appliance.policy.flow import (
    DataResult, DefaultFlow, DeliveryInfo, DeliveryOutcome, Flow, SessionInfo, Verdict, relay_verdict,
)
from appliance.policy.relay import RelayRules
from appliance.policy.functions import Functions
from appliance.policy.sandbox import Limits, ScriptError
from appliance.policy.scripted import SAFE_DEFAULTS, ScriptedFlow

if TYPE_CHECKING:
    from appliance.stats.metrics import Instruments

log = logging.getLogger(__name__)


class FailedFlow:
    """A listener whose script does not compile: every stage gets its safe default."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem

    def _fail(self, flow: str, label: str) -> Any:
        fallback = SAFE_DEFAULTS[flow]
        log.error("policy %s %s %s: script unusable (%s), %s", self.name, label, flow, self.problem,
                  fallback.decision.value if fallback else "no decision")
        return fallback

    def connect(self, session: SessionInfo) -> Verdict:
        return self._fail("connect", f"[{session.client_ip}]")  # type: ignore[no-any-return]

    def auth(self, session: SessionInfo, username: str, password: str) -> Verdict | None:
        return self._fail("auth", f"[{session.client_ip}]")  # type: ignore[no-any-return]

    def mail_from(self, session: SessionInfo, sender: str) -> Verdict:
        return self._fail("mail_from", f"[{session.client_ip}]")  # type: ignore[no-any-return]

    def rcpt_to(self, session: SessionInfo, recipient: str) -> Verdict:
        return self._fail("rcpt_to", f"[{session.client_ip}]")  # type: ignore[no-any-return]

    def data(self, session: SessionInfo, message: bytes) -> DataResult:
        return DataResult(verdict=self._fail("data", f"[{session.client_ip}]"), decided=True)

    def pre_delivery(self, entry: DeliveryInfo) -> Verdict:
        return self._fail("pre_delivery", f"<{entry.msgid}>:{entry.queueid}")  # type: ignore[no-any-return]

    def post_delivery(self, entry: DeliveryInfo, outcome: DeliveryOutcome) -> None:
        self._fail("post_delivery", f"<{entry.msgid}>:{entry.queueid}")


class PolicyFlow:
    """Dispatch by listener: SMTP stages by `session.listener`, delivery by `entry.listener`.

    The relay rules decide RCPT for listeners without a script and for scripts without an
    rcpt_to handler; a script's rcpt_to handler (listed in `rcpt_by_script`) decides itself.
    """

    def __init__(self, flows: dict[str, Flow], *, relay: RelayRules = RelayRules(),
                 rcpt_by_script: frozenset[str] = frozenset()) -> None:
        self.flows = flows
        self.relay = relay
        self.rcpt_by_script = rcpt_by_script
        self._default = DefaultFlow(relay=relay)

    def _for(self, listener: str) -> Flow:
        return self.flows.get(listener, self._default)

    def connect(self, session: SessionInfo) -> Verdict:
        session.mynetwork = self.relay.is_mynetwork(session.client_ip)
        return self._for(session.listener).connect(session)

    def auth(self, session: SessionInfo, username: str, password: str) -> Verdict | None:
        return self._for(session.listener).auth(session, username, password)

    def mail_from(self, session: SessionInfo, sender: str) -> Verdict:
        return self._for(session.listener).mail_from(session, sender)

    def rcpt_to(self, session: SessionInfo, recipient: str) -> Verdict:
        flow = self._for(session.listener)
        if flow is not self._default and session.listener not in self.rcpt_by_script:
            refused = relay_verdict(self.relay, session, recipient)
            if refused is not None:
                return refused
        return flow.rcpt_to(session, recipient)

    def data(self, session: SessionInfo, message: bytes) -> DataResult:
        return self._for(session.listener).data(session, message)

    def pre_delivery(self, entry: DeliveryInfo) -> Verdict:
        return self._for(entry.listener).pre_delivery(entry)

    def post_delivery(self, entry: DeliveryInfo, outcome: DeliveryOutcome) -> None:
        self._for(entry.listener).post_delivery(entry, outcome)


def script_key(text: str, limits: Limits) -> str:
    return hashlib.sha256(f"{limits.instructions}:{limits.memory}:{text}".encode()).hexdigest()


class FlowCache:
    """Compiled scripts by text hash: a new config revision recompiles only scripts that changed."""

    def __init__(self, functions: Functions, *, limits: Limits = Limits(),
                 metrics: Instruments | None = None) -> None:
        self.functions = functions
        self.limits = limits
        self.metrics = metrics
        self._lock = threading.Lock()
        self._compiled: dict[str, ScriptedFlow | FailedFlow] = {}
        self.compilations = 0

    def get(self, script_id: str, text: str) -> ScriptedFlow | FailedFlow:
        key = script_key(text, self.limits)
        with self._lock:
            found = self._compiled.get(key)
        if found is not None:
            return found
        try:
            flow: ScriptedFlow | FailedFlow = ScriptedFlow(
                text, name=script_id, functions=self.functions, limits=self.limits,
                metrics=self.metrics)
        except ScriptError as exc:
            log.error("policy script %s cannot be used: %s", script_id, exc)
            flow = FailedFlow(script_id, str(exc))
        with self._lock:
            self.compilations += 1
            self._compiled[key] = flow
        return flow

    def build(self, config: Any) -> PolicyFlow:
        """The Flow for a config revision (anything with `.listeners[].script` and `.scripts`)."""
        scripts: dict[str, str] = dict(getattr(config, "scripts", {}) or {})
        flows: dict[str, Flow] = {}
        rcpt_by_script: set[str] = set()
        used: set[str] = set()
        for listener in config.listeners:
            if listener.script and listener.script in scripts:
                text = scripts[listener.script]
                flow = self.get(listener.script, text)
                flows[listener.id] = flow
                # A script that does not compile defers RCPT (its safe default), not relay rules.
                if isinstance(flow, FailedFlow) or "rcpt_to" in flow.handlers:
                    rcpt_by_script.add(listener.id)
                used.add(script_key(text, self.limits))
        with self._lock:  # forget scripts no longer in the config
            self._compiled = {k: v for k, v in self._compiled.items() if k in used}
        section = getattr(config, "relay", None)
        relay = RelayRules() if section is None else RelayRules.of(
            networks=section.mynetworks, domains=section.domains,
            address_literals=section.address_literals)
        return PolicyFlow(flows, relay=relay, rcpt_by_script=frozenset(rcpt_by_script))
