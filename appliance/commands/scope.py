"""What a restricted user's command may name and count: only messages inside its restriction."""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import Session

from appliance.db.models import HistoryEntry, QueueEntry
from appliance.errors import Forbidden, NotFound

# `msgid` or `msgid:queueid` (API.md, Queue and history).
MESSAGE_ID = re.compile(r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(:\d+)?$")


# Commands that count queue entries take the user's restriction as this option (ANDed with any
# the user gave): a restricted user's queuestat counts its own entries only.
SCOPED_BY_OPTION = {"queuestat": "--restriction"}
# Commands that show node-wide figures (graphs and counters of every domain) and cannot be
# narrowed to a restriction: refused to restricted users.
NODE_WIDE = frozenset({"statd"})


def scoped_argv(argv: list[str], restriction: str) -> list[str]:
    """The argv a user restricted by `restriction` runs; Forbidden for a node-wide command."""
    if not restriction or not argv:
        return argv
    if argv[0] in NODE_WIDE:
        raise Forbidden(f"{argv[0]} shows node-wide figures; a restricted user may not run it")
    option = SCOPED_BY_OPTION.get(argv[0])
    return [*argv, option, restriction] if option else argv


def message_id(text: str) -> str | None:
    """The msgid a text names (`uuid` or `uuid:queueid`), or None."""
    m = MESSAGE_ID.match(text.strip())
    return m.group(1).lower() if m else None


def msgid_visible(
    session: Session, msgid: str, *, queue_where: ColumnElement[bool] | None,
    history_where: ColumnElement[bool] | None,
) -> None:
    """NotFound unless a queue entry or history row of `msgid` lies inside the restriction."""
    for model, where in ((QueueEntry, queue_where), (HistoryEntry, history_where)):
        stmt = select(model.id).where(model.msgid == msgid)
        if where is not None:
            stmt = stmt.where(where)
        if session.scalar(select(exists(stmt))):
            return
    raise NotFound(f"no message {msgid}")
