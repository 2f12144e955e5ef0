"""Grouping of claimed entries: per destination, then per message into SMTP transactions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

# RFC 5321 section 4.5.3.1.8: a server must accept at least 100 recipients per transaction.
MAX_RCPTS_PER_TRANSACTION = 100


class Routable(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def msgid(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def sender(self) -> str: ...
    @property
    def rcpt(self) -> str: ...


E = TypeVar("E", bound=Routable)


@dataclasses.dataclass(frozen=True, order=True)
class Destination:
    """Where a connection goes: a transport and either a static next hop or a domain's MXes.

    Entries with equal destinations may share connections; the per-destination connection
    limit counts against this key.
    """

    transport: str
    nexthop: str = ""  # HOST:PORT when static
    domain: str = ""  # recipient domain when routed by MX
    source_ip: str = ""

    def __str__(self) -> str:
        return f"{self.transport}:{self.nexthop or self.domain}"


def destination_for(
    *, transport: str, nexthop: str, rcpt_domain: str, source_ip: str = ""
) -> Destination:
    """A static next hop makes the domain irrelevant; otherwise each domain is its own route."""
    if nexthop:
        return Destination(transport=transport, nexthop=nexthop, source_ip=source_ip)
    return Destination(transport=transport, domain=rcpt_domain.lower(), source_ip=source_ip)


@dataclasses.dataclass
class Transaction(Generic[E]):
    """One SMTP transaction: one message body to one or more recipients."""

    msgid: str
    path: str
    sender: str
    entries: list[E]


def group_by_destination(
    entries: Iterable[E], route: Callable[[E], Destination]
) -> dict[Destination, list[E]]:
    """Entries per destination, each list in claim order."""
    groups: dict[Destination, list[E]] = {}
    for entry in entries:
        groups.setdefault(route(entry), []).append(entry)
    return groups


def transactions(
    entries: Iterable[E], *, max_rcpts: int = MAX_RCPTS_PER_TRANSACTION
) -> list[Transaction[E]]:
    """Entries of one destination as SMTP transactions: recipients of the same message (same
    body and sender) share one, up to `max_rcpts`; one recipient appears at most once in each."""
    out: list[Transaction[E]] = []
    open_: dict[tuple[str, str, str], Transaction[E]] = {}
    for entry in entries:
        key = (entry.msgid, entry.path, entry.sender)
        tx = open_.get(key)
        if tx is None or len(tx.entries) >= max_rcpts or any(
            e.rcpt.lower() == entry.rcpt.lower() for e in tx.entries
        ):
            tx = Transaction(msgid=entry.msgid, path=entry.path, sender=entry.sender, entries=[])
            open_[key] = tx
            out.append(tx)
        tx.entries.append(entry)
    return out
