"""HQL fields: which operators each accepts and how its value is checked (pure, no SQL)."""

from __future__ import annotations

import dataclasses
import enum
import re

from appliance.errors import FilterError
from appliance.hql.ast import Value
from appliance.types import Action, QueueState


class Type(enum.Enum):
    TEXT = "text"
    ADDRESS = "address"  # compared case-insensitively
    INTEGER = "integer"
    SECONDS = "seconds"  # Unix time, may have a fraction
    STATE = "state"  # ACTIVE | DEFER | HOLD
    ACTION = "action"
    MESSAGEID = "messageid"  # uuid or uuid:queueid
    METADATA = "metadata"


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: Type
    ops: frozenset[str]
    queue_only: bool = False
    history_only: bool = False
    trash_only: bool = False


_TEXT_OPS = frozenset({"=", "~"})
_NUMBER_OPS = frozenset({"=", ">", ">=", "<", "<="})


def _f(name: str, type_: Type, **kw: bool) -> Field:
    ops = _NUMBER_OPS if type_ in (Type.INTEGER, Type.SECONDS) else _TEXT_OPS
    if type_ is Type.STATE:
        ops = frozenset({"="})
    return Field(name, type_, ops, **kw)


FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        _f("messageid", Type.MESSAGEID),
        _f("queueid", Type.INTEGER),
        _f("historyid", Type.INTEGER, history_only=True),
        _f("actionid", Type.INTEGER),
        _f("jobid", Type.TEXT),
        _f("queue", Type.STATE, queue_only=True),
        _f("action", Type.ACTION),
        _f("quarantine", Type.TEXT),
        _f("server", Type.TEXT),
        _f("transport", Type.TEXT),
        _f("from", Type.ADDRESS),
        _f("to", Type.ADDRESS),
        _f("ip", Type.TEXT),
        _f("helo", Type.TEXT),
        _f("sasl", Type.TEXT),
        _f("subject", Type.TEXT),
        _f("error", Type.TEXT),
        _f("time", Type.SECONDS),
        _f("size", Type.INTEGER),
        _f("retries", Type.INTEGER),
        _f("deleted", Type.SECONDS, trash_only=True),  # when it went to the trash
        _f("deletedby", Type.TEXT, trash_only=True),  # who deleted it
    )
}
# Names the old API's clients send (halonctl's own help shows `id=5`), kept beside today's.
ALIASES: dict[str, str] = {"id": "queueid", "retry": "retries"}
FIELDS.update({alias: FIELDS[name] for alias, name in ALIASES.items()})
METADATA = Field("metadata", Type.METADATA, _TEXT_OPS)
METADATA_PREFIX = "metadata."
MAX_METADATA_KEY = 128  # QueueMetadata.key is String(128)

_INT_MAX = 2**63 - 1  # both stores' BIGINT
_INTEGER = re.compile(r"[0-9]+")
_SECONDS = re.compile(r"[0-9]{1,15}(\.[0-9]{1,9})?")
_ACTIONS = frozenset(a.value for a in Action)
_STATES = frozenset(s.value for s in QueueState)


def lookup(name: str, pos: int) -> tuple[Field, str | None]:
    """The field named `name` (case-insensitive) and its metadata key, or FilterError."""
    if name[: len(METADATA_PREFIX)].lower() == METADATA_PREFIX:
        key = name[len(METADATA_PREFIX) :]
        if not key or len(key) > MAX_METADATA_KEY:
            raise FilterError(pos, f"metadata key must be 1 to {MAX_METADATA_KEY} characters")
        return METADATA, key
    field = FIELDS.get(name.lower())
    if field is None:
        raise FilterError(pos, f"unknown field '{name}'")
    return field, None


def check_value(field: Field, op: str, raw: str, pos: int, *, quoted: bool = False) -> Value:
    """The value `raw` (at `pos`) as the field's type, or FilterError naming what was expected."""
    t = field.type
    if t is Type.INTEGER:
        if not _INTEGER.fullmatch(raw) or int(raw) > _INT_MAX:
            raise FilterError(pos, f"field '{field.name}' needs a whole number, not '{raw}'")
        return int(raw)
    if t is Type.SECONDS:
        if not _SECONDS.fullmatch(raw):
            raise FilterError(pos, f"field '{field.name}' needs Unix seconds, not '{raw}'")
        return float(raw)
    if t is Type.STATE:
        if raw.upper() not in _STATES:
            raise FilterError(pos, f"queue must be ACTIVE, DEFER or HOLD, not '{raw}'")
        return raw.upper()
    if t is Type.ACTION and op == "=":
        if raw and raw.upper() not in _ACTIONS:
            raise FilterError(pos, f"unknown action '{raw}' (one of {', '.join(sorted(_ACTIONS))})")
        return raw.upper()
    if t is Type.MESSAGEID and op == "=" and ":" in raw:
        msgid, _, qid = raw.rpartition(":")
        if not _INTEGER.fullmatch(qid) or int(qid) > _INT_MAX:
            at = pos if quoted else pos + len(msgid) + 1
            raise FilterError(at, f"queue id after ':' must be a whole number, not '{qid}'")
        return (msgid, int(qid))
    return raw
