"""Why is a queue entry still here: everything that holds it, in one answer."""

from __future__ import annotations

import dataclasses
import time as _time

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from appliance import enhanced
from appliance.config.schema import Config
from appliance.db.models import QueueEntry
from appliance.delivery.grouping import destination_for
from appliance.delivery.retry import attempts_left
from appliance.queue import events
from appliance.queue import store as q
from appliance.queue import suspend
from appliance.types import Action, QueueState


@dataclasses.dataclass(frozen=True, kw_only=True)
class Explanation:
    id: int
    msgid: str
    state: str
    waitson: str  # suspension | quarantine | hold | rate | destination | retry | delivery | lease
    lastreply: str
    enhancedcode: str
    meaning: str
    suspension: str
    suspensionreason: str
    suspensionuntil: float
    quarantine: str
    ratelimit: str
    destination: str
    destinationlimit: int
    inflight: int
    nextretry: float
    retries: int
    retriesleft: int
    age: float
    lifetime: int
    summary: str


def explain(session: Session, entry_id: int, *, config: Config, now: float,
            where: ColumnElement[bool] | None = None) -> Explanation:
    entry = q.get_entry(session, entry_id, where=where)
    cfg = config.queue
    holders = suspend.holding(session, entry.id) if entry.state != QueueState.HOLD.value else []
    held = holders[0] if holders else None
    quarantined = entry.state == QueueState.HOLD.value and entry.action == Action.QUARANTINE.value
    last_defer = events.last_for_entry(session, entry.id, ("deferred",))
    rate = last_defer.detail.get("rates", "") if last_defer is not None else ""
    code = enhanced.find(entry.error)
    dest, limit, inflight = _destination(session, entry, config, now)
    due = entry.state in (QueueState.ACTIVE.value, QueueState.DEFER.value) and entry.next_retry <= now
    leased = entry.lease_until >= now
    if held is not None:
        waits = "suspension"
    elif quarantined:
        waits = "quarantine"
    elif entry.state == QueueState.HOLD.value:
        waits = "hold"
    elif leased:
        waits = "lease"
    elif rate and not due:
        waits = "rate"
    elif due and limit and inflight >= limit:
        waits = "destination"
    elif not due:
        waits = "retry"
    else:
        waits = "delivery"
    next_attempt = max(entry.next_retry, now)
    left = attempts_left(entry.retries, cfg.retry_schedule, next_attempt, received=entry.ts0,
                         lifetime=cfg.lifetime)
    found = Explanation(
        id=entry.id, msgid=entry.msgid, state=entry.state, waitson=waits, lastreply=entry.error,
        enhancedcode=code, meaning=enhanced.meaning(code) if code else "",
        suspension=held.id if held else "", suspensionreason=held.reason if held else "",
        suspensionuntil=held.expires if held else 0.0,
        quarantine=entry.quarantine if quarantined else "", ratelimit=rate, destination=dest,
        destinationlimit=limit, inflight=inflight, nextretry=entry.next_retry, retries=entry.retries,
        retriesleft=left, age=max(now - entry.ts0, 0.0), lifetime=cfg.lifetime, summary="",
    )
    return dataclasses.replace(found, summary=_summary(found, now))


def _destination(session: Session, entry: QueueEntry, config: Config, now: float) -> tuple[str, int, int]:
    """The entry's destination, its connection limit, and how many of its entries are leased."""
    try:
        transport = config.transport(entry.transport or "default")
    except KeyError:
        return f"{entry.transport}: unknown transport", 0, 0
    dest = destination_for(transport=transport.id, nexthop=transport.nexthop, rcpt_domain=entry.rcpt_domain)
    same = QueueEntry.transport == entry.transport
    if not dest.nexthop:
        same = same & (QueueEntry.rcpt_domain == entry.rcpt_domain)
    inflight = int(session.scalar(select(func.count()).select_from(QueueEntry)
                                  .where(same, QueueEntry.lease_until >= now)) or 0)
    return str(dest), transport.max_connections, inflight


def _when(ts: float, now: float) -> str:
    delta = ts - now
    stamp = _time.strftime("%Y-%m-%d %H:%M:%S UTC", _time.gmtime(ts))
    return f"{stamp} (in {_span(delta)})" if delta > 0 else f"{stamp} ({_span(-delta)} ago)"


def _span(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def _summary(x: Explanation, now: float) -> str:
    parts = [f"Entry {x.msgid}:{x.id} is {x.state}"]
    if x.waitson == "suspension":
        parts.append(f"held by suspension {x.suspension} ({x.suspensionreason or 'no reason given'}) "
                     f"until {_when(x.suspensionuntil, now)}")
    elif x.waitson == "quarantine":
        parts.append(f"held in quarantine {x.quarantine!r} until an operator releases it (retry) or deletes it")
    elif x.waitson == "hold":
        parts.append("held by an operator until retried")
    elif x.waitson == "lease":
        parts.append("being delivered now")
    elif x.waitson == "rate":
        parts.append(f"deferred by the delivery policy's rate limit {x.ratelimit}")
    elif x.waitson == "destination":
        parts.append(f"waiting for a connection to {x.destination}: {x.inflight} of its entries in "
                     f"flight, limit {x.destinationlimit} connections")
    elif x.waitson == "retry":
        parts.append("waiting for its next retry")
    else:
        parts.append("due for delivery now")
    if x.lastreply:
        reply = f"last reply: {x.lastreply}"
        if x.enhancedcode:
            reply += f" ({x.enhancedcode}: {x.meaning})"
        parts.append(reply)
    if x.state != QueueState.HOLD.value:
        parts.append(f"next attempt {_when(max(x.nextretry, now), now)}; {x.retries} attempts so far, "
                     f"{x.retriesleft} left before it bounces")
    lifetime_left = x.lifetime - x.age
    parts.append(f"age {_span(x.age)} of a {_span(x.lifetime)} queue lifetime "
                 + (f"({_span(lifetime_left)} left)" if lifetime_left > 0 else "(expired: it bounces at the next failure)"))
    return "; ".join(parts) + "."
