"""The policy seam: what SMTP reception and delivery ask at each stage of a message's life.

`Flow` is the protocol the protocol layers call; `DefaultFlow` is the built-in behaviour when no
script is configured (relay control, then accept and queue to the listener's transport).
Scripted flows implement the same protocol.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Protocol

from appliance.policy.relay import RelayRules


class Decision(str, enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"  # permanent (5xx)
    DEFER = "defer"  # temporary (4xx)
    QUARANTINE = "quarantine"  # queue in HOLD with action QUARANTINE
    DELETE = "delete"  # accept and drop (history DELETE)
    DELIVER = "deliver"  # pre-delivery: deliver via `transport` / `nexthop`


@dataclasses.dataclass(frozen=True, kw_only=True)
class Verdict:
    decision: Decision = Decision.ACCEPT
    code: int = 0  # SMTP code for reject/defer; 0 = the default for the decision
    text: str = ""
    quarantine: str = ""
    transport: str = ""  # route to this transport id
    nexthop: str = ""  # pre-delivery: HOST:PORT override
    source_ip: str = ""  # pre-delivery: bind to this local address
    # Where the decision came from, for the message's timeline (not part of what it decides).
    script: str = dataclasses.field(default="", compare=False)  # "" when no script decided
    rates: tuple[str, ...] = dataclasses.field(default=(), compare=False)  # "ns:entry n/Ts" over their limit


ACCEPT = Verdict()


@dataclasses.dataclass(kw_only=True)
class SessionInfo:
    """What the SMTP session knows; flows may read it and scripts see it as variables."""

    listener: str
    client_ip: str
    client_port: int = 0
    helo: str = ""
    sasl: str = ""  # SASL username once authenticated
    authenticated: bool = False
    tls: bool = False
    # The client is in the relay rules' mynetworks (set by the flow at connect): trusted hosts,
    # whose bare-LF messages (local scripts) are repaired rather than refused.
    mynetwork: bool = False
    sender: str | None = None
    recipients: list[str] = dataclasses.field(default_factory=list)
    # Metadata a scripted flow set at MAIL/RCPT, kept until its data() returns it in
    # DataResult.metadata (reset by its mail_from); the caller only keeps passing this object.
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(kw_only=True)
class DataResult:
    """The DATA stage's verdict plus the changes a flow made to the message."""

    verdict: Verdict = ACCEPT
    add_headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    remove_headers: list[str] = dataclasses.field(default_factory=list)
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    recipient_transports: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeliveryInfo:
    """One queue entry as pre-/post-delivery flows see it."""

    queueid: int
    msgid: str
    sender: str
    recipient: str
    transport: str
    listener: str
    sasl: str
    retries: int
    metadata: dict[str, str]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeliveryOutcome:
    action: str  # DELIVER, DEFER, BOUNCE
    code: int
    text: str
    transfertime: float


class Flow(Protocol):
    def connect(self, session: SessionInfo) -> Verdict: ...
    def auth(self, session: SessionInfo, username: str, password: str) -> Verdict | None:
        """A verdict to decide the login, or None to check it against the node's users."""
    def mail_from(self, session: SessionInfo, sender: str) -> Verdict: ...
    def rcpt_to(self, session: SessionInfo, recipient: str) -> Verdict: ...
    def data(self, session: SessionInfo, message: bytes) -> DataResult: ...
    def pre_delivery(self, entry: DeliveryInfo) -> Verdict: ...
    def post_delivery(self, entry: DeliveryInfo, outcome: DeliveryOutcome) -> None: ...


class DefaultFlow:
    """No script: accept what the listener's own limits and the relay rules allow (by default,
    relaying for loopback clients and authenticated ones only; see RelayRules)."""

    relay: RelayRules = RelayRules()  # also for subclasses that do not call __init__

    def __init__(self, *, relay: RelayRules = RelayRules()) -> None:
        self.relay = relay

    def connect(self, session: SessionInfo) -> Verdict:
        session.mynetwork = self.relay.is_mynetwork(session.client_ip)
        return ACCEPT

    def auth(self, session: SessionInfo, username: str, password: str) -> Verdict | None:
        return None

    def mail_from(self, session: SessionInfo, sender: str) -> Verdict:
        return ACCEPT

    def rcpt_to(self, session: SessionInfo, recipient: str) -> Verdict:
        return relay_verdict(self.relay, session, recipient) or ACCEPT

    def data(self, session: SessionInfo, message: bytes) -> DataResult:
        return DataResult()

    def pre_delivery(self, entry: DeliveryInfo) -> Verdict:
        return ACCEPT

    def post_delivery(self, entry: DeliveryInfo, outcome: DeliveryOutcome) -> None:
        return None


def relay_verdict(relay: RelayRules, session: SessionInfo, recipient: str) -> Verdict | None:
    """The relay rules' refusal of `recipient` in this session as a verdict, or None."""
    refused = relay.refusal(recipient, client_ip=session.client_ip,
                            authenticated=session.authenticated)
    if refused is None:
        return None
    return Verdict(decision=Decision.REJECT, code=refused[0], text=refused[1])
