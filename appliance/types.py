"""Plain values shared across layers."""

from __future__ import annotations

import dataclasses
import enum


class QueueState(str, enum.Enum):
    ACTIVE = "ACTIVE"
    DEFER = "DEFER"
    HOLD = "HOLD"


class Action(str, enum.Enum):
    """Final outcomes (and DEFER, a scheduled retry) written to history."""

    DELIVER = "DELIVER"
    REJECT = "REJECT"
    BOUNCE = "BOUNCE"
    DELETE = "DELETE"
    ERROR = "ERROR"
    QUARANTINE = "QUARANTINE"
    DEFER = "DEFER"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Envelope:
    """What an SMTP session established for one message."""

    sender: str  # '' for the null reverse-path <>
    recipients: tuple[str, ...]
    listener: str = ""
    client_ip: str = ""
    helo: str = ""
    sasl: str = ""
    tls: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Note:
    """An event of a message known before it is queued (its reception, policy decisions),
    written to its timeline in the transaction that queues it."""

    kind: str
    ts: float
    detail: dict[str, str] = dataclasses.field(default_factory=dict)
    ref: str = ""  # the msgid this message had on the node that relayed it here


@dataclasses.dataclass(frozen=True, kw_only=True)
class NewMessage:
    """A message whose body is already durable in the spool, ready to be queued."""

    msgid: str
    envelope: Envelope
    path: str  # spool-relative
    size: int
    subject: str = ""
    received: float
    transport: str = ""  # default for every recipient
    transports: dict[str, str] = dataclasses.field(default_factory=dict)  # per recipient
    state: QueueState = QueueState.ACTIVE
    quarantine: str = ""
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    is_dsn: bool = False
    notes: tuple[Note, ...] = ()


def domain_of(address: str) -> str:
    """The lower-case domain of an address ('' for the null sender or a local part only)."""
    _, at, domain = address.rpartition("@")
    return domain.lower().strip("[]") if at else ""
