"""The message timeline: events written beside the queue and history rows, read back in order.

Writers call `add()` inside the transaction that makes the change the event describes (intake's
group commit, delivery's outcome transaction, an API call's transaction), so an event exists
exactly when its change does and costs no commit of its own.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Mapping
from typing import cast

from sqlalchemy import Table, insert, or_, select
from sqlalchemy.orm import Session

from appliance.db.models_timeline import MessageEvent

_TABLE = cast(Table, MessageEvent.__table__)
_INSERT = insert(_TABLE)

# What the kinds mean (docs/api/timeline.md lists them for clients).
KINDS = (
    "received", "policy", "queued", "suspended", "released", "attempt", "deferred",
    "delivered", "bounced", "quarantined", "deleted", "error",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    """One event of a message; `queueid` 0 is the message as a whole."""

    msgid: str
    kind: str
    ts: float
    queueid: int = 0
    detail: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ref: str = ""  # the msgid of the same message on the node it was relayed from

    def summary(self) -> str:
        return summarize(self.kind, self.detail)


def row(event: Event) -> dict[str, object]:
    return {"msgid": event.msgid, "queueid": event.queueid, "ts": event.ts, "kind": event.kind,
            "detail": json.dumps(dict(event.detail), sort_keys=True), "ref": event.ref}


def add(session: Session, events: Iterable[Event]) -> None:
    """Insert events in one statement (nothing when there are none)."""
    rows = [row(e) for e in events]
    if rows:  # the table on the connection, not the ORM: a plain executemany
        session.connection().execute(_INSERT, rows)


def timeline(session: Session, msgid: str) -> list[Event]:
    """Every event of `msgid` on this node, oldest first, with those of the copies it was
    relayed as (this node received it from another one, or passed it on and saw it again)."""
    related = {msgid}
    for own, ref in session.execute(
        select(MessageEvent.msgid, MessageEvent.ref)
        .where(or_(MessageEvent.ref == msgid, MessageEvent.msgid == msgid), MessageEvent.ref != "")
    ):
        related.update((own, ref))
    rows = session.scalars(
        select(MessageEvent).where(MessageEvent.msgid.in_(sorted(related)))
        .order_by(MessageEvent.ts, MessageEvent.id)
    )
    return [_event(r) for r in rows]


def last_for_entry(session: Session, queueid: int, kinds: tuple[str, ...]) -> Event | None:
    """The newest event of one entry among `kinds`."""
    found = session.scalars(
        select(MessageEvent).where(MessageEvent.queueid == queueid, MessageEvent.kind.in_(kinds))
        .order_by(MessageEvent.ts.desc(), MessageEvent.id.desc()).limit(1)
    ).first()
    return None if found is None else _event(found)


def _event(r: MessageEvent) -> Event:
    try:
        detail = json.loads(r.detail or "{}")
    except ValueError:
        detail = {}
    return Event(msgid=r.msgid, kind=r.kind, ts=r.ts, queueid=r.queueid,
                 detail={str(k): str(v) for k, v in dict(detail).items()}, ref=r.ref)


def _stamp(value: str) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(value)))
    except ValueError:
        return value


def summarize(kind: str, d: Mapping[str, str]) -> str:
    """One human-readable line for an event."""
    g = d.get
    if kind == "received":
        parts = [f"received from [{g('client', '')}]", f"helo {g('helo') or '-'}"]
        parts += [f"sasl {g('sasl')}"] if g("sasl") else []
        parts += ["tls" if g("tls") == "yes" else "no tls", f"<{g('sender', '')}>",
                  f"{g('size', '0')} bytes on {g('listener', '')}"]
        parts += [f"relayed from {g('relayed_from')}"] if g("relayed_from") else []
        return ", ".join(parts)
    if kind == "policy":
        text = f"policy {g('script', '')} {g('stage', '')}: {g('decision', '')}"
        text += f" {g('code')}" if g("code") else ""
        text += f" ({g('reason')})" if g("reason") else ""
        text += f" rate limit {g('rates')}" if g("rates") else ""
        return text
    if kind == "queued":
        return f"queued for <{g('rcpt', '')}> via {g('transport', '')} ({g('state', '')})"
    if kind in ("suspended", "released"):
        verb = "held by" if kind == "suspended" else "released from"
        text = f"{verb} suspension {g('suspension', '')}" + (f": {g('reason')}" if g("reason") else "")
        return text + (f" (set by {g('by')}, until {_stamp(g('until', ''))})" if kind == "suspended" else "")
    if kind == "attempt":
        return f"delivery attempt to {g('peer') or '-'}: {g('reply', '')}"
    if kind == "deferred":
        text = f"deferred, retry {g('retries', '')} at {_stamp(g('next_retry', ''))}: {g('reply', '')}"
        return text + (f" (rate limit {g('rates')})" if g("rates") else "")
    if kind == "delivered":
        return f"delivered to <{g('rcpt', '')}> via {g('peer') or '-'}: {g('reply', '')}"
    return f"{kind}" + (f": {g('reason')}" if g("reason") else "")
