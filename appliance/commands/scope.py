"""What a restricted user's command may name: only messages inside its restriction."""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import Session

from appliance.db.models import HistoryEntry, QueueEntry
from appliance.errors import NotFound

# `msgid` or `msgid:queueid` (API.md, Queue and history).
MESSAGE_ID = re.compile(r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(:\d+)?$")


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
