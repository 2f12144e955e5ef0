"""A cluster of nodes queried as one: merged searches with per-node paging, sums, bulk actions."""

from __future__ import annotations

import dataclasses
import heapq
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

from appliance_client.errors import NodeError, NodeFault
from appliance_client.fanout import Call, FanOut
from appliance_client.node import NodeSpec

BULK_OPERATIONS = {
    "retry": "mailQueueRetryBulk", "bounce": "mailQueueBounceBulk",
    "delete": "mailQueueDeleteBulk", "hold": "mailQueueHoldBulk",
}


@dataclasses.dataclass
class ClusterResult:
    """Per-node values and per-node errors of one fan-out call."""

    values: dict[str, Any]
    errors: dict[str, NodeError]


@dataclasses.dataclass
class Page:
    """One merged page, newest first; `cursor` continues every node where this page stopped."""

    items: list[tuple[str, Any]]  # (node label, item)
    cursor: dict[str, int]
    errors: dict[str, NodeError]
    totals: dict[str, int]


@dataclasses.dataclass
class Preview:
    """One node's answer to a bulk preview."""

    node: str
    count: int
    sample: list[Any]


@dataclasses.dataclass
class GroupRow:
    key: str
    count: int
    buckets: list[int]
    per_node: dict[str, int]


@dataclasses.dataclass
class SuspensionRow:
    """One suspension as the cluster holds it: the same id on every node it was set on."""

    id: str
    filter: str
    reason: str
    author: str
    created: int
    expires: int
    state: str
    held: int
    per_node: dict[str, int]


@dataclasses.dataclass
class TimelineEntry:
    node: str
    event: Any

    @property
    def time(self) -> float:
        return float(self.event.time)


def ttl_seconds(text: str) -> int:
    """A suspension's ttl as typed: `90`, `90s`, `15m`, `2h`, `1d` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    factor = units.get(text[-1:], 0)
    number = text[:-1] if factor else text
    if not number.isdigit():
        raise ValueError(f"ttl {text!r}: expected seconds, or a number with s, m, h or d")
    return int(number) * (factor or 1)


def _items(value: Any) -> list[Any]:
    """zeep gives a one-child array as a list (None when empty) or wraps it in `item`."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    items = getattr(value, "item", None)
    return list(items or [])


class Cluster:
    """Nodes addressed by label; every helper makes one fan-out round per step."""

    def __init__(self, nodes: list[NodeSpec], *, wsdl_source: str | NodeSpec | None = None) -> None:
        if not nodes:
            raise ValueError("a cluster needs at least one node")
        self.nodes = {n.label: n for n in nodes}
        if len(self.nodes) != len(nodes):
            raise ValueError("node labels must be unique")
        self.fanout = FanOut(wsdl_source or nodes[0])

    def close(self) -> None:
        self.fanout.close()

    def call(self, operation: str, **kwargs: Any) -> ClusterResult:
        return self.call_each({label: kwargs for label in self.nodes}, operation)

    def call_each(self, kwargs_by_node: dict[str, dict[str, Any]], operation: str) -> ClusterResult:
        calls = {label: self.fanout.stage(self.nodes[label], operation, **kw)
                 for label, kw in kwargs_by_node.items()}
        self.fanout.dispatch()
        return _collect(calls)

    def search(
        self, *, filter: str = "", limit: int = 100, cursor: dict[str, int] | None = None,
        history: bool = False,
    ) -> Page:
        """A merged page of queue (or history) items, newest `msgts0` first across nodes.

        Each node is asked for `limit` items from its own offset; the page takes the newest
        `limit` of the union and every node's offset advances by what it contributed.
        """
        return self._merged_page("mailHistory" if history else "mailQueue", filter=filter,
                                 limit=limit, cursor=cursor,
                                 key=lambda item: (item.msgts0, item.id))

    def _merged_page(self, op: str, *, filter: str, limit: int, cursor: dict[str, int] | None,
                     key: Callable[[Any], Any]) -> Page:
        cursor = dict(cursor or {label: 0 for label in self.nodes})
        result = self.call_each(
            {label: {"filter": filter, "offset": off, "limit": limit, "options": {"totalhits": True}}
             for label, off in cursor.items()}, op,
        )
        streams, totals = {}, {}
        for label, value in result.values.items():
            streams[label] = _items(getattr(value, "result", value))
            total = getattr(value, "totalhits", None)
            if total is not None:
                totals[label] = int(total)
        merged = heapq.merge(
            *[[(label, item) for item in items] for label, items in streams.items()],
            key=lambda pair: key(pair[1]), reverse=True,
        )
        page = [pair for _, pair in zip(range(limit), merged)]
        taken: dict[str, int] = {}
        for label, _item in page:
            taken[label] = taken.get(label, 0) + 1
        next_cursor = {label: off + taken.get(label, 0) for label, off in cursor.items()}
        return Page(items=page, cursor=next_cursor, errors=result.errors, totals=totals)

    def count(self, *, filter: str = "") -> tuple[int, ClusterResult]:
        result = self.call("mailQueueCount", filter=filter)
        return sum(int(v) for v in result.values.values()), result

    def group_by(self, *, filter: str = "", field: str = "to-domain") -> tuple[list[GroupRow], ClusterResult]:
        result = self.call("mailQueueGroupBy", filter=filter, field=field)
        rows: dict[str, GroupRow] = {}
        for label, value in result.values.items():
            for item in _items(value):
                buckets = [int(b) for b in _items(getattr(item, "buckets", None))]
                row = rows.setdefault(item.key, GroupRow(item.key, 0, [0] * len(buckets), {}))
                row.count += int(item.count)
                row.per_node[label] = int(item.count)
                row.buckets = [a + b for a, b in zip(row.buckets, buckets)] if row.buckets else buckets
        return sorted(rows.values(), key=lambda r: (-r.count, r.key)), result

    def bulk(self, action: str, *, filter: str, duplicate: bool = False,
             preview: bool = False) -> ClusterResult:
        """A bulk action on every node; with `preview`, each node's count of what it would
        take, nothing changed."""
        if action not in BULK_OPERATIONS:
            raise ValueError(f"bulk action must be one of {', '.join(BULK_OPERATIONS)}")
        kwargs: dict[str, Any] = {"filter": filter}
        if action == "retry" and duplicate:
            kwargs["duplicate"] = True
        if preview:
            kwargs["preview"] = True
        return self.call(BULK_OPERATIONS[action], **kwargs)

    def dkim_keys(self) -> ClusterResult:
        """Each node's DKIM keys (dkimKeyList): domain, selector, algorithm, DNS record, active."""
        result = self.call("dkimKeyList")
        return ClusterResult(values={k: _items(v) for k, v in result.values.items()},
                             errors=result.errors)

    def dkim_generate(self, domain: str, selector: str, algorithm: str = "rsa") -> ClusterResult:
        """A new key on each node (each its own: give each node its own selector); the values
        are the DNS records to publish."""
        return self.call("dkimKeyGenerate", domain=domain, selector=selector, algorithm=algorithm)

    def dkim_delete(self, domain: str, selector: str) -> ClusterResult:
        return self.call("dkimKeyDelete", domain=domain, selector=selector)
    def bulk_preview(self, action: str, *, filter: str, limit: int = 10) -> tuple[list[Preview], dict[str, NodeError]]:
        """What a bulk action would take on each node: the count and the first entries."""
        if action not in BULK_OPERATIONS:
            raise ValueError(f"bulk action must be one of {', '.join(BULK_OPERATIONS)}")
        result = self.call("mailQueueBulkPreview", filter=filter, action=action, limit=limit)
        previews = [Preview(node=label, count=int(value.result or 0),
                            sample=_items(value.sample))
                    for label, value in sorted(result.values.items())]
        return previews, result.errors

    # -- the trash ------------------------------------------------------------------------
    def trash(self, *, filter: str = "", limit: int = 100,
              cursor: dict[str, int] | None = None) -> Page:
        """A merged page of trashed entries, most recently deleted first across nodes (the
        same per-node paging as `search`)."""
        return self._merged_page("mailTrash", filter=filter, limit=limit, cursor=cursor,
                                 key=lambda item: (item.msgdeleted, item.id))

    def trash_restore(self, *, filter: str, preview: bool = False) -> ClusterResult:
        """Restore matching trashed entries on every node (each node restores its own)."""
        return self.call("mailTrashRestore", filter=filter, **({"preview": True} if preview else {}))

    def trash_purge(self, *, filter: str, preview: bool = False) -> ClusterResult:
        return self.call("mailTrashPurge", filter=filter, **({"preview": True} if preview else {}))

    # -- throttled drains -------------------------------------------------------------------
    def drain(self, *, filter: str, action: str, per_minute: int) -> ClusterResult:
        """Start a drain job on every node (each at `per_minute`); values are job ids."""
        return self.call("mailQueueDrain", filter=filter, action=action, per_minute=per_minute)

    def jobs(self) -> tuple[list[tuple[str, Any]], dict[str, NodeError]]:
        """Every node's queue jobs as (node label, job), newest first per node."""
        result = self.call("mailQueueJobList")
        rows = [(label, job) for label, value in sorted(result.values.items())
                for job in _items(value)]
        return rows, result.errors

    def job_cancel(self, ids: dict[str, int]) -> ClusterResult:
        """Cancel a job per node: {node label: job id}."""
        return self.call_each({label: {"id": job_id} for label, job_id in ids.items()},
                              "mailQueueJobCancel")

    def graphs(self, name: str) -> ClusterResult:
        return self.call("graphFile", name=name)

    def run_command(
        self, argv: list[str], *, poll_interval: float = 0.2, deadline: float | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[str, bytes]]:
        """Run one command on every node and yield (label, chunk) as output arrives.

        Polls all still-running commands in one fan-out round each time; a node's command is
        over when its poll faults after the output is drained. `stop()` returning true, or the
        deadline passing, stops the remaining commands.
        """
        started = self.call("commandRun", argv={"item": [a.encode() for a in argv]})
        self.errors: dict[str, NodeError] = dict(started.errors)
        running = {label: cid for label, cid in started.values.items()}
        while running:
            calls = {label: self.fanout.stage(self.nodes[label], "commandPoll", commandid=cid)
                     for label, cid in running.items()}
            self.fanout.dispatch()
            for label, call in calls.items():
                if isinstance(call.error, NodeFault):
                    del running[label]  # ended and drained
                    continue
                if call.error is not None:
                    self.errors[label] = call.error
                    del running[label]
                    continue
                for chunk in _items(call.result()):
                    yield label, bytes(chunk)
            expired = deadline is not None and time.monotonic() > deadline
            if running and (expired or (stop is not None and stop())):
                for label, cid in running.items():
                    self.fanout.stage(self.nodes[label], "commandStop", commandid=cid)
                self.fanout.dispatch()
                return
            if running:
                time.sleep(poll_interval)

    def suspend(self, *, filter: str, ttl: int, reason: str = "", id: str | None = None
                ) -> tuple[str, ClusterResult]:
        """Hold delivery of `filter` on every node under one id (so one removal ends it everywhere)."""
        sid = id or secrets.token_hex(6)
        return sid, self.call("mailQueueSuspend", filter=filter, ttl=ttl, reason=reason, id=sid)

    def unsuspend(self, id: str) -> ClusterResult:
        return self.call("mailQueueSuspendRemove", id=id)

    def suspensions(self, *, ended: bool = False) -> tuple[list[SuspensionRow], ClusterResult]:
        result = self.call("mailQueueSuspendList", ended=ended)
        rows: dict[str, SuspensionRow] = {}
        for label, value in result.values.items():
            for item in _items(value):
                row = rows.setdefault(item.id, SuspensionRow(
                    id=item.id, filter=item.filter, reason=item.reason or "", author=item.author,
                    created=int(item.created), expires=int(item.expires), state=item.state,
                    held=0, per_node={}))
                row.held += int(item.held)
                row.per_node[label] = int(item.held)
                row.expires = max(row.expires, int(item.expires))
        return sorted(rows.values(), key=lambda r: (-r.created, r.id)), result

    def explain(self, id: int) -> ClusterResult:
        """mailQueueExplain on every node; queue ids are per node, so the nodes that do not
        have the entry answer NotFound (in `errors`)."""
        return self.call("mailQueueExplain", id=id)

    def timeline(self, msgid: str, *, rounds: int = 4) -> tuple[list[TimelineEntry], ClusterResult]:
        """Every node's events of `msgid` merged by time, each tagged with its node. A message
        relayed between nodes has one msgid per node: the ids each answer names are asked for
        in a further round, until no new one turns up."""
        asked: set[str] = set()
        wanted = {msgid.lower()}
        seen: dict[tuple[str, str, int, str, float], TimelineEntry] = {}
        errors: dict[str, NodeError] = {}
        values: dict[str, Any] = {}
        for _ in range(rounds):
            todo = sorted(wanted - asked)
            if not todo:
                break
            for one in todo:
                asked.add(one)
                result = self.call("mailTimeline", msgid=one)
                for label, err in result.errors.items():
                    if not (isinstance(err, NodeFault) and "NotFound" in (err.code or "")):
                        errors[label] = err
                for label, value in result.values.items():
                    values.setdefault(label, [])
                    for event in _items(value):
                        key = (label, event.msgid, int(event.queueid), event.kind, float(event.time))
                        seen.setdefault(key, TimelineEntry(node=label, event=event))
                        wanted.add(str(event.msgid).lower())
                        for pair in _items(getattr(event, "detail", None)):
                            if pair.first == "relayed_from" and pair.second:
                                wanted.add(str(pair.second).lower())
                        values[label].append(event)
        merged = sorted(seen.values(), key=lambda e: (e.time, e.node))
        return merged, ClusterResult(values=values, errors=errors)

    def alerts(self) -> ClusterResult:
        return self.call("alertList")

    def alert_add(self, *, name: str, filter: str, threshold: int, minutes: float = 0.0,
                  mailto: str = "", webhook: str = "") -> ClusterResult:
        return self.call("alertAdd", name=name, filter=filter, threshold=threshold,
                         minutes=minutes, mailto=mailto, webhook=webhook)

    def alert_delete(self, *, name: str, owner: str | None = None) -> ClusterResult:
        kwargs: dict[str, Any] = {"name": name}
        if owner:
            kwargs["owner"] = owner
        return self.call("alertDelete", **kwargs)


def _collect(calls: dict[str, Call]) -> ClusterResult:
    values: dict[str, Any] = {}
    errors: dict[str, NodeError] = {}
    for label, call in calls.items():
        if call.error is not None:
            errors[label] = call.error
        else:
            values[label] = call.result()
    return ClusterResult(values=values, errors=errors)
