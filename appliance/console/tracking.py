"""Mail tracking across nodes: history, queue and quarantine as one list, newest first.

Each node is asked for its queue entries and its history rows (two streams per node), each
from its own offset; a page takes the newest `size` of the union and every stream's offset
advances by what it contributed (the cluster client's per-node cursors, one per stream), so
paging stays correct however the entries are spread over the nodes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
from collections.abc import Mapping
from typing import Any

from appliance_client.cluster import Cluster
from appliance_client.errors import NodeError

from appliance.console.nodes import Member, items

SOURCES = ("queue", "history")
ACTIONS = ("DELIVER", "REJECT", "BOUNCE", "DELETE", "ERROR", "QUARANTINE", "DEFER")
SHOW = ("all", "queue", "quarantine", "history")
PAGE_SIZES = (10, 25, 50, 100, 250, 500)
DEFAULT_SIZE = 50
QUICK_FIELDS = ("sender", "recipient", "subject", "after", "before", "action")

Cursor = dict[str, int]  # "queue|node" / "history|node" -> offset


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unix(text: str) -> int | None:
    """A datetime-local value (UTC) or Unix seconds."""
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use YYYY-MM-DDTHH:MM, UTC)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp())


def page_size(args: Mapping[str, str]) -> int:
    """The `size` argument when it is one of PAGE_SIZES, else the default."""
    try:
        size = int(args.get("size", DEFAULT_SIZE))
    except ValueError:
        return DEFAULT_SIZE
    return size if size in PAGE_SIZES else DEFAULT_SIZE


@dataclasses.dataclass(frozen=True)
class View:
    """What the tracking page shows: everything a deep link carries."""

    filter: str = ""  # HQL typed by the user
    sender: str = ""
    recipient: str = ""
    subject: str = ""
    after: str = ""
    before: str = ""
    action: str = ""
    show: str = "all"
    size: int = DEFAULT_SIZE

    @classmethod
    def of(cls, args: Mapping[str, str]) -> "View":
        show = args.get("show", "all")
        action = args.get("action", "").upper()
        return cls(filter=args.get("filter", "").strip(), sender=args.get("sender", "").strip(),
                   recipient=args.get("recipient", "").strip(),
                   subject=args.get("subject", "").strip(), after=args.get("after", "").strip(),
                   before=args.get("before", "").strip(),
                   action=action if action in ACTIONS else "",
                   show=show if show in SHOW else "all",
                   size=page_size(args))

    def query(self) -> dict[str, str]:
        """The non-default fields, as a deep link's arguments."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value != field.default:
                out[field.name] = str(value)
        return out

    def hql(self) -> str:
        """The filter sent to the nodes: the typed HQL, then the quick fields (`&&` keeps the
        typed expression whole, whatever its own `or`s)."""
        terms = []
        if self.sender:
            terms.append(f"from~{quote(self.sender)}")
        if self.recipient:
            terms.append(f"to~{quote(self.recipient)}")
        if self.subject:
            terms.append(f"subject~{quote(self.subject)}")
        after, before = _unix(self.after), _unix(self.before)
        if after is not None:
            terms.append(f"time>={after}")
        if before is not None:
            terms.append(f"time<={before}")
        if self.action:
            terms.append(f"action={self.action}")
        if self.show == "quarantine":
            terms.append("action=QUARANTINE")
        quick = " and ".join(terms)
        if self.filter and quick:
            return f"{self.filter} && {quick}"
        return self.filter or quick

    def sources(self) -> tuple[str, ...]:
        if self.show in ("queue", "quarantine"):
            return ("queue",)
        if self.show == "history":
            return ("history",)
        return SOURCES


@dataclasses.dataclass
class Row:
    node: str
    source: str  # queue | quarantine | history
    id: int  # queue id, or history id
    queueid: int
    msgid: str
    received: float
    sender: str
    recipient: str
    subject: str
    state: str  # ACTIVE / DEFER / HOLD, or the history row's action
    action: str
    error: str
    retries: int
    record: dict[str, Any]

    @property
    def key(self) -> str:
        """What a selection checkbox carries."""
        return f"{self.node}|{self.id}"

    @property
    def actionable(self) -> bool:
        return self.source != "history"

    @property
    def when(self) -> str:
        return dt.datetime.fromtimestamp(self.received, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@dataclasses.dataclass
class Page:
    rows: list[Row]
    cursor: Cursor  # where the next page starts
    more: bool
    totals: dict[str, dict[str, int]]  # node -> source -> matches
    errors: dict[str, NodeError]  # "node" or "node (history)" -> error

    def total(self) -> int:
        return sum(sum(t.values()) for t in self.totals.values())


def text_of(value: Any) -> str:
    """A base64Binary field (zeep gives bytes) or a string, as text."""
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def record_of(item: Any) -> dict[str, Any]:
    """Every field of a queue or history item, as plain values for the inspector."""
    out: dict[str, Any] = {}
    for name in getattr(item, "__values__", {}) or {}:
        value = getattr(item, name)
        if name in ("msgsubject", "msgerror"):
            value = text_of(value)
        elif name in ("msgscore", "msgmetadata"):
            value = [(text_of(getattr(p, "first", "")), text_of(getattr(p, "second", "")))
                     for p in items(value)]
        elif isinstance(value, (bytes, bytearray)):
            value = text_of(value)
        out[name] = "" if value is None else value
    return out


def row_of(node: str, source: str, item: Any) -> Row:
    action = text_of(getattr(item, "msgaction", ""))
    if source == "queue" and action == "QUARANTINE":
        source = "quarantine"
    queueid = int(getattr(item, "msgqueueid", None) or item.id) if source == "history" else int(item.id)
    return Row(node=node, source=source, id=int(item.id), queueid=queueid,
               msgid=text_of(item.msgid), received=float(item.msgts0 or 0),
               sender=text_of(item.msgfrom), recipient=text_of(item.msgto),
               subject=text_of(getattr(item, "msgsubject", None)),
               state=text_of(getattr(item, "msgqueue", "")) if source != "history" else action,
               action=action, error=text_of(getattr(item, "msgerror", None)),
               retries=int(getattr(item, "msgretries", 0) or 0), record=record_of(item))


def search(client: Cluster, members: list[Member], view: View, cursor: Cursor | None) -> Page:
    """One page of the view over `members`, from `cursor` (None: the first page)."""
    hql = view.hql()
    streams = [(source, m.label) for source in view.sources() for m in members]
    start = {f"{s}|{label}": 0 for s, label in streams}
    if cursor:
        start.update({k: int(v) for k, v in cursor.items() if k in start})
    calls = {}
    for source, label in streams:
        op = "mailHistory" if source == "history" else "mailQueue"
        calls[(source, label)] = client.fanout.stage(
            client.nodes[label], op, filter=hql, offset=start[f"{source}|{label}"],
            limit=view.size + 1, options={"totalhits": True})
    client.fanout.dispatch()
    errors: dict[str, NodeError] = {}
    totals: dict[str, dict[str, int]] = {}
    lists: list[list[Row]] = []
    failed: dict[str, list[str]] = {}
    for (source, label), call in calls.items():
        if call.error is not None:
            failed.setdefault(label, []).append(source)
            errors[f"{label} ({source})"] = call.error
            continue
        value = call.result()
        found = [row_of(label, source, item) for item in items(getattr(value, "result", value))]
        lists.append(found)
        total = getattr(value, "totalhits", None)
        if total is not None:
            totals.setdefault(label, {})[source] = int(total)
    # A node whose every stream failed is one error (it did not answer), not one per stream.
    for label, sources in failed.items():
        if len(sources) == len(view.sources()):
            first = errors.pop(f"{label} ({sources[0]})")
            for s in sources[1:]:
                errors.pop(f"{label} ({s})", None)
            errors[label] = first
    merged = heapq.merge(*lists, key=lambda r: (r.received, r.source != "history", r.id),
                         reverse=True)
    page = [row for _, row in zip(range(view.size + 1), merged)]
    more = len(page) > view.size
    page = page[: view.size]
    nxt = dict(start)
    for row in page:
        key = f"{'history' if row.source == 'history' else 'queue'}|{row.node}"
        nxt[key] += 1
    return Page(rows=page, cursor=nxt, more=more, totals=totals, errors=errors)
