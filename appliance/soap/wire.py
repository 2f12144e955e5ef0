"""Every type that crosses the wire (API.md): items, arrays of `<item>`, base64 fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from spyne import Array, Boolean, ByteArray, ComplexModel, Double, Integer, Long, Unicode

TNS = "urn:halon"
M = TypeVar("M", bound=ComplexModel)


def items(of: type, type_name: str) -> type:
    """An array whose members are `<item>` elements (PHP's SOAP_SINGLE_ELEMENT_ARRAYS reads it)."""
    return Array(of, member_name="item", type_name=type_name)


def filler(cls: type[M]) -> Callable[[dict[str, Any]], M]:
    """A fast `cls(**values)` for a dict naming exactly every field of `cls`.

    Spyne's ComplexModel.__init__ walks every field (defaults, read-only properties, SQLAlchemy
    checks) before setting it: about 150 µs for a queue item with its metadata pairs, 15 ms of a
    100-item mailQueue (under 1 ms this way). For a class with no defaults, read-only fields or
    SQLAlchemy mapping, and every field given, the instance it makes holds just the given
    values; this makes that instance directly.
    """
    fields = cls.get_flat_type_info(cls)
    for name, field in fields.items():
        attrs = field.Attributes
        if (attrs.default is not None or attrs.default_factory is not None or attrs.read_only
                or isinstance(getattr(cls, name, None), property)):
            raise TypeError(f"{cls.__name__}.{name} needs Spyne's own __init__")
    if cls.__orig__ is not None or hasattr(cls, "_sa_class_manager"):
        raise TypeError(f"{cls.__name__} needs Spyne's own __init__")
    names = frozenset(fields)

    def make(values: dict[str, Any]) -> M:
        if values.keys() != names:
            raise TypeError(f"{cls.__name__} fields differ: {sorted(names ^ values.keys())}")
        inst: M = object.__new__(cls)
        inst.__dict__.update(values)
        return inst

    return make


Strings = items(Unicode, "stringArray")
Longs = items(Long, "longArray")


class Pair(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "pair"
    _type_info = [("first", Unicode), ("second", Unicode)]


Pairs = items(Pair, "pairArray")

# Fields a queue entry and a history row share, in wire order.
_MESSAGE_FIELDS = [
    ("id", Long),
    ("msgid", Unicode),
    ("msgts0", Long),
    ("msgts", Long),
    ("msgfrom", Unicode),
    ("msgto", Unicode),
    ("msgsubject", ByteArray),
    ("msgsize", Long),
    ("msglistener", Unicode),
    ("msgtransport", Unicode),
    ("msgfromserver", Unicode),
    ("msghelo", Unicode),
    ("msgsasl", Unicode),
    ("msgaction", Unicode),
    ("msgquarantine", Unicode),
    ("msgdescription", Unicode),
    ("msgerror", ByteArray),
    ("msgretries", Integer),
    ("msgpath", Unicode),
    ("msgactionid", Long),
    ("msgscore", Pairs),  # item[] of first = engine, second = score, as the old API's clients read it
]


class QueueItem(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "queueItem"
    _type_info = [
        *_MESSAGE_FIELDS,
        ("msgqueue", Unicode),
        ("msgnextretry", Long),
        ("msgmetadata", Pairs),
        ("serialno", Unicode),
    ]


class HistoryItem(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "historyItem"
    _type_info = [
        *_MESSAGE_FIELDS,
        ("msgqueueid", Long),
        ("msgtransfertime", Double),
        ("msgmetadata", Pairs),
        ("serialno", Unicode),
    ]


QueueItems = items(QueueItem, "queueItemArray")
HistoryItems = items(HistoryItem, "historyItemArray")


class SearchOptions(ComplexModel):
    """mailQueue/mailHistory `options`: ask for `totalhits` with the page."""

    __namespace__ = TNS
    __type_name__ = "searchOptions"
    _type_info = [("totalhits", Boolean)]


class GroupItem(ComplexModel):
    """One mailQueueGroupBy row; `buckets` are counts by age like qshape's columns."""

    __namespace__ = TNS
    __type_name__ = "groupItem"
    _type_info = [("key", Unicode), ("count", Long), ("buckets", Longs)]


GroupItems = items(GroupItem, "groupItemArray")


class StateCount(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "stateCount"
    _type_info = [("state", Unicode), ("count", Long)]


class SystemStatus(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "systemStatusInfo"
    _type_info = [
        ("serial", Unicode),
        ("hostname", Unicode),
        ("version", Unicode),
        ("uptime", Long),
        ("queue", items(StateCount, "stateCountArray")),
        ("configrevision", Long),
    ]


class UserItem(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "userItem"
    _type_info = [
        ("username", Unicode),
        ("role", Unicode),
        ("operations", Strings),
        ("restriction", Unicode),
        ("commands", Strings),
        ("created", Long),
    ]


UserItems = items(UserItem, "userItemArray")


class SuspensionItem(ComplexModel):
    """One mailQueueSuspendList row: who held what, why, until when, and how much it holds now."""

    __namespace__ = TNS
    __type_name__ = "suspensionItem"
    _type_info = [
        ("id", Unicode), ("filter", Unicode), ("reason", Unicode), ("author", Unicode),
        ("created", Long), ("expires", Long), ("state", Unicode), ("ended", Long),
        ("held", Long), ("serialno", Unicode),
    ]


SuspensionItems = items(SuspensionItem, "suspensionItemArray")


class TimelineEvent(ComplexModel):
    """One mailTimeline event; `time` is `ts` with its fraction, to order events of one second."""

    __namespace__ = TNS
    __type_name__ = "timelineEvent"
    _type_info = [
        ("ts", Long), ("time", Double), ("msgid", Unicode), ("queueid", Long), ("kind", Unicode),
        ("summary", ByteArray), ("detail", Pairs), ("serialno", Unicode),
    ]


TimelineEvents = items(TimelineEvent, "timelineEventArray")


class ExplainInfo(ComplexModel):
    """mailQueueExplain: what holds one queue entry, as fields and as one `summary` text."""

    __namespace__ = TNS
    __type_name__ = "explainInfo"
    _type_info = [
        ("id", Long), ("msgid", Unicode), ("msgqueue", Unicode), ("waitson", Unicode),
        ("lastreply", ByteArray), ("enhancedcode", Unicode), ("meaning", Unicode),
        ("suspension", Unicode), ("suspensionreason", Unicode), ("suspensionuntil", Long),
        ("quarantine", Unicode), ("ratelimit", Unicode), ("destination", Unicode),
        ("destinationlimit", Long), ("inflight", Long), ("nextretry", Long), ("retries", Long),
        ("retriesleft", Long), ("age", Long), ("lifetime", Long), ("summary", ByteArray),
        ("serialno", Unicode),
    ]


class AlertItem(ComplexModel):
    """One saved query with its alert threshold and its state (ok or firing, since when)."""

    __namespace__ = TNS
    __type_name__ = "alertItem"
    _type_info = [
        ("name", Unicode), ("owner", Unicode), ("filter", Unicode), ("threshold", Long),
        ("minutes", Double), ("mailto", Unicode), ("webhook", Unicode), ("state", Unicode),
        ("since", Long), ("lastcount", Long), ("lastchecked", Long),
    ]


AlertItems = items(AlertItem, "alertItemArray")
