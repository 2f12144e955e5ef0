"""Suspensions, message timelines, "why is it stuck", and saved queries with alerts."""

from __future__ import annotations

import logging
from typing import Any

from spyne import Boolean, Double, Long, ServiceBase, Unicode, rpc
from sqlalchemy import select, true
from sqlalchemy.orm import Session

from appliance import hql
from appliance.alerts import rules
from appliance.config.schema import Config
from appliance.db.models import HistoryEntry, QueueEntry
from appliance.delivery.explain import explain
from appliance.errors import Forbidden, InvalidInput, NotFound
from appliance.queue import events, suspend
from appliance.soap.app import MUTATING
from appliance.soap.calls import Call, Done, required
from appliance.soap.convert import utf8
from appliance.soap.wire import (
    AlertItem, AlertItems, ExplainInfo, Pair, SuspensionItem, SuspensionItems, TimelineEvent,
    TimelineEvents,
)

log = logging.getLogger(__name__)
_FILTER = {"filter_": "filter"}
_CONTROLS = str.maketrans({c: " " for c in range(32) if c not in (9,)})


class TimelineService(ServiceBase):  # type: ignore[misc]
    @rpc(Unicode, Long, Unicode, Unicode, _in_arg_names=_FILTER, _returns=Unicode,
         _out_variable_name="result", _udd=MUTATING)
    def mailQueueSuspend(ctx: Any, filter_: str | None, ttl: int | None, reason: str | None,
                         id: str | None) -> str:
        call: Call = ctx.udc
        text = required(filter_, "filter")
        hql.compile_filter(text)  # the caller's own filter faults at its own position
        restriction = call.level.restriction
        stored = hql.restrict(restriction, text) if restriction else text
        seconds = int(required(ttl, "ttl"))

        def body(session: Session) -> Done[str]:
            row = suspend.create(session, filter=stored, ttl=seconds, reason=reason or "",
                                 author=call.principal.user, now=call.now(), suspension_id=id or "")
            return Done(value=row.id)

        sid = call.mutate({"filter": text, "ttl": seconds, "reason": reason or "", "id": id or ""}, body)
        log.info("suspension %s of %r for %d s by %s: %s", sid, stored, seconds,
                 call.principal.user, reason or "")
        return sid

    @rpc(Unicode, _returns=Long, _out_variable_name="result", _udd=MUTATING)
    def mailQueueSuspendRemove(ctx: Any, id: str | None) -> int:
        call: Call = ctx.udc
        sid = required(id, "id")

        def body(session: Session) -> Done[int]:
            _own(call, suspend.get(session, sid).author)
            released = suspend.remove(session, sid, now=call.now(), spread=_spread(call))
            return Done(value=released, affected=released)

        released = call.mutate({"id": sid}, body)
        if call.node.kick_delivery is not None:
            call.node.kick_delivery()
        return released

    @rpc(Boolean, _returns=SuspensionItems, _out_variable_name="result")
    def mailQueueSuspendList(ctx: Any, ended: bool | None) -> list[SuspensionItem]:
        call: Call = ctx.udc
        with call.read() as session:
            rows = suspend.listing(session, now=call.now(), include_ended=bool(ended))
        if call.level.restriction:
            rows = [(r, n) for r, n in rows if r.author == call.principal.user]
        return [SuspensionItem(
            id=r.id, filter=r.filter, reason=r.reason, author=r.author, created=int(r.created),
            expires=int(r.expires), state=r.state, ended=int(r.ended), held=held,
            serialno=call.node.serial) for r, held in rows]

    @rpc(Unicode, _returns=TimelineEvents, _out_variable_name="result")
    def mailTimeline(ctx: Any, msgid: str | None) -> list[TimelineEvent]:
        call: Call = ctx.udc
        wanted = required(msgid, "msgid").strip().lower()
        if len(wanted) > 36:
            raise InvalidInput("msgid is a message's UUID")
        with call.read() as session:
            if call.level.restriction:
                _visible(session, call, wanted)
            found = events.timeline(session, wanted)
        return [TimelineEvent(
            ts=int(e.ts), time=float(e.ts), msgid=e.msgid, queueid=e.queueid, kind=e.kind,
            summary=utf8(e.summary()), serialno=call.node.serial,
            detail=[Pair(first=k, second=v) for k, v in sorted(e.detail.items())]) for e in found]

    @rpc(Long, _returns=ExplainInfo, _out_variable_name="result")
    def mailQueueExplain(ctx: Any, id: int | None) -> ExplainInfo:
        call: Call = ctx.udc
        if id is None or id <= 0:
            raise InvalidInput("id must be a positive queue id")
        with call.read() as session:
            x = explain(session, int(id), config=_config(call), now=call.now(),
                        where=call.restriction())
        return ExplainInfo(
            id=x.id, msgid=x.msgid, msgqueue=x.state, waitson=x.waitson, lastreply=utf8(x.lastreply),
            enhancedcode=x.enhancedcode, meaning=x.meaning, suspension=x.suspension,
            suspensionreason=x.suspensionreason, suspensionuntil=int(x.suspensionuntil),
            quarantine=x.quarantine, ratelimit=x.ratelimit, destination=x.destination,
            destinationlimit=x.destinationlimit, inflight=x.inflight, nextretry=int(x.nextretry),
            retries=x.retries, retriesleft=x.retriesleft, age=int(x.age), lifetime=x.lifetime,
            summary=utf8(x.summary.translate(_CONTROLS)), serialno=call.node.serial)

    @rpc(Unicode, Unicode, Long, Double, Unicode, Unicode, _returns=Long,
         _out_variable_name="result", _udd=MUTATING, _in_arg_names=_FILTER)
    def alertAdd(ctx: Any, name: str | None, filter_: str | None, threshold: int | None,
                 minutes: float | None, mailto: str | None, webhook: str | None) -> int:
        call: Call = ctx.udc
        alert = required(name, "name")
        limit = int(required(threshold, "threshold"))
        args = {"name": alert, "filter": filter_ or "", "threshold": limit,
                "minutes": float(minutes or 0.0), "mailto": mailto or "", "webhook": webhook or ""}
        if webhook and not call.level.is_admin:
            # The node would POST to any address it can reach: that is an administrator's choice.
            raise Forbidden("only an administrator may give an alert a webhook")

        def body(session: Session) -> Done[int]:
            row = rules.add(session, owner=call.principal.user, name=alert, filter=filter_ or "",
                            threshold=limit, minutes=float(minutes or 0.0), mail_to=mailto or "",
                            webhook=webhook or "", now=call.now())
            return Done(value=row.id)

        return call.mutate(args, body)

    @rpc(Unicode, Unicode, _udd=MUTATING)
    def alertDelete(ctx: Any, name: str | None, owner: str | None) -> None:
        call: Call = ctx.udc
        alert = required(name, "name")
        whose = owner or call.principal.user
        _own(call, whose)

        def body(session: Session) -> Done[None]:
            rules.delete(session, owner=whose, name=alert)
            return Done(value=None)

        call.mutate({"name": alert, "owner": whose}, body)

    @rpc(_returns=AlertItems, _out_variable_name="result")
    def alertList(ctx: Any) -> list[AlertItem]:
        call: Call = ctx.udc
        with call.read() as session:
            rows = rules.listing(session, owner=None if call.level.is_admin else call.principal.user)
            return [AlertItem(
                name=r.name, owner=r.owner, filter=r.filter, threshold=r.threshold,
                minutes=r.minutes, mailto=r.mail_to, webhook=r.webhook, state=r.state,
                since=int(r.since), lastcount=r.last_count, lastchecked=int(r.last_checked))
                for r in rows]


def _own(call: Call, owner: str) -> None:
    """Users other than admins act on what they set themselves only."""
    if owner != call.principal.user and not call.level.is_admin:
        raise Forbidden("only an administrator may change what another user set")


def _config(call: Call) -> Config:
    return call.node.config() or Config()


def _spread(call: Call) -> float:
    """Released entries are spread over the first retry interval."""
    return float(_config(call).queue.retry_schedule[0])


def _visible(session: Session, call: Call, msgid: str) -> None:
    """A restricted caller sees the timeline of a message only if one of its entries (queued
    or in history) is inside the restriction."""
    queue_where = call.restriction() or true()
    history_where = call.restriction(history=True) or true()
    found = session.scalar(select(QueueEntry.id).where(QueueEntry.msgid == msgid, queue_where).limit(1)) \
        or session.scalar(select(HistoryEntry.id).where(HistoryEntry.msgid == msgid, history_where).limit(1))
    if not found:
        raise NotFound(f"no message {msgid}")
