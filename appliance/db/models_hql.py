"""Indexes for HQL searches and bulk actions: domains by age (0004), subject text (0007)."""

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

# `subject~word` (P3) reads a text index instead of every subject. PostgreSQL: a pg_trgm GIN
# index, which ILIKE '%word%' uses directly. SQLite: the FTS5 table SUBJECT_FTS (trigram
# tokenizer, external content = queue), created by migration 0007 with the triggers that keep
# it in step with every insert, update and delete of a queue row; it is not a model, as
# SQLAlchemy cannot describe a virtual table.
Index("ix_queue_subject_trgm", QueueEntry.subject, postgresql_using="gin",
      postgresql_ops={"subject": "gin_trgm_ops"}).ddl_if(dialect="postgresql")
SUBJECT_FTS = "queue_subject_fts"
