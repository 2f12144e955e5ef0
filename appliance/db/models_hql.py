"""Indexes for HQL searches and bulk actions (migration 0004): newest-first domain searches."""

from __future__ import annotations

from sqlalchemy import Index

from appliance.db.models import HistoryEntry, QueueEntry

# `to~%@domain` / `from~%@domain` ordered by ts0 with a limit read the newest entries of the
# domain straight from the index instead of sorting every entry of a large domain.
for _model in (QueueEntry, HistoryEntry):
    _name = _model.__tablename__
    Index(f"ix_{_name}_rcpt_domain_ts0", _model.rcpt_domain, _model.ts0)
    Index(f"ix_{_name}_sender_domain_ts0", _model.sender_domain, _model.ts0)

# store.unreferenced_path counts entries by spool path after every delete or bounce.
Index("ix_queue_path", QueueEntry.path)
