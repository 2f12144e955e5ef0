"""Statistics operations: statList, statClear, hslRate, hslRateClear, graphList, graphFile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spyne import ByteArray, ComplexModel, Long, ServiceBase, Unicode, rpc
from sqlalchemy.orm import Session

from appliance.errors import InvalidInput
from appliance.soap.app import MUTATING
from appliance.soap.calls import Call, Done
from appliance.soap.wire import TNS, Strings, items
from appliance.stats import rrd
from appliance.stats.counters import clear_stats, list_stats
from appliance.stats.rates import clear_rates, list_rates


class StatItem(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "statItem"
    _type_info = [("key1", Unicode), ("key2", Unicode), ("key3", Unicode), ("count", Long),
                  ("updated", Long), ("created", Long)]


class RateItem(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "rateItem"
    _type_info = [("ns", Unicode), ("entry", Unicode), ("count", Long), ("interval", Long),
                  ("expires", Long)]


StatItems = items(StatItem, "statItemArray")
RateItems = items(RateItem, "rateItemArray")


class StatsService(ServiceBase):  # type: ignore[misc]
    @rpc(Unicode, Unicode, Unicode, Long, Long, _returns=StatItems, _out_variable_name="result")
    def statList(ctx: Any, key1: str | None, key2: str | None, key3: str | None,
                 offset: int | None, limit: int | None) -> list[StatItem]:
        call: Call = ctx.udc
        with call.read() as session:
            rows = list_stats(session, key1 or "", key2 or "", key3 or "", offset=offset or 0,
                              limit=100 if limit is None else limit)
        return [StatItem(key1=r.key1, key2=r.key2, key3=r.key3, count=r.count,
                         updated=int(r.updated), created=int(r.created)) for r in rows]

    @rpc(Unicode, Unicode, Unicode, _returns=Long, _out_variable_name="result", _udd=MUTATING)
    def statClear(ctx: Any, key1: str | None, key2: str | None, key3: str | None) -> int:
        call: Call = ctx.udc
        keys = (key1 or "", key2 or "", key3 or "")

        def body(session: Session) -> Done[int]:
            cleared = clear_stats(session, *keys)
            return Done(value=cleared, affected=cleared)

        return call.mutate({"key1": keys[0], "key2": keys[1], "key3": keys[2]}, body)

    @rpc(Unicode, Unicode, Long, Long, _returns=RateItems, _out_variable_name="result")
    def hslRate(ctx: Any, ns: str | None, entry: str | None, offset: int | None,
                limit: int | None) -> list[RateItem]:
        call: Call = ctx.udc
        page = {"offset": offset or 0, "limit": 100 if limit is None else limit}
        rates = call.node.rates
        if rates is not None:  # the node's live windows, not the stored copy a flush behind
            rows = rates.list(ns or "", entry or "", **page)
        else:
            with call.read() as session:
                rows = list_rates(session, ns or "", entry or "", now=call.now(), **page)
        return [RateItem(ns=r.ns, entry=r.entry, count=r.count, interval=r.interval,
                         expires=int(r.expires)) for r in rows]

    @rpc(Unicode, Unicode, _returns=Long, _out_variable_name="result", _udd=MUTATING)
    def hslRateClear(ctx: Any, ns: str | None, entry: str | None) -> int:
        call: Call = ctx.udc
        if not ns:
            raise InvalidInput("ns is required")
        rates = call.node.rates

        def body(session: Session) -> Done[int]:
            # Through the node's engine when there is one, so its memory of full windows goes too.
            cleared = rates.clear(session, ns, entry or "") if rates else clear_rates(session, ns, entry or "")
            return Done(value=cleared, affected=cleared)

        return call.mutate({"ns": ns, "entry": entry or ""}, body)

    @rpc(_returns=Strings, _out_variable_name="result")
    def graphList(ctx: Any) -> list[str]:
        return rrd.graph_list(_rrd_dir(ctx.udc))

    @rpc(Unicode, _returns=ByteArray, _out_variable_name="result")
    def graphFile(ctx: Any, name: str | None) -> bytes:
        if not name:
            raise InvalidInput("name is required")
        return rrd.graph_file(_rrd_dir(ctx.udc), name)


def _rrd_dir(call: Call) -> Path:
    if call.node.rrd_dir is None:
        raise InvalidInput("this node keeps no graphs")
    return call.node.rrd_dir
