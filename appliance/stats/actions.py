"""Fold history rows into `mail:action:<action>` counters, exactly once.

Design: migration 0002 puts a trigger on `history` that inserts one `stat_pending_action` row
per history row, in the transaction that writes the history row. The flusher deletes the
pending rows it reads in the same transaction that adds their counts to `stat_counter`. A
history row that commits is therefore always counted (its pending row commits with it), and
counted once (the pending row disappears when its count is committed). A cursor over history
ids would miss rows on PostgreSQL, where a lower id can commit after a higher one.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from appliance.db.models_stats import StatPendingAction

Key = tuple[str, str, str]
ACTION_PREFIX = "mail:action:"


def action_key(action: str, listener: str, domain: str) -> Key:
    """The counter a final action counts: ("mail:action:deliver", listener id, rcpt domain)."""
    return (ACTION_PREFIX + action.lower(), listener, domain)


def fold_pending_actions(session: Session, *, chunk: int = 5000, max_rows: int = 100_000) -> dict[Key, int]:
    """Delete pending actions (up to `max_rows`) and return their counts per counter key."""
    counts: dict[Key, int] = {}
    is_pg = session.get_bind().dialect.name == "postgresql"
    taken = 0
    while taken < max_rows:
        stmt = select(
            StatPendingAction.id, StatPendingAction.action, StatPendingAction.listener,
            StatPendingAction.domain,
        ).order_by(StatPendingAction.id).limit(chunk)
        if is_pg:  # two flushers (two processes) never fold the same row
            stmt = stmt.with_for_update(skip_locked=True)
        rows = session.execute(stmt).all()
        if not rows:
            break
        session.execute(delete(StatPendingAction).where(StatPendingAction.id.in_([r.id for r in rows])))
        for row in rows:
            key = action_key(row.action, row.listener, row.domain)
            counts[key] = counts.get(key, 0) + 1
        taken += len(rows)
        if len(rows) < chunk:
            break
    session.flush()
    return counts
