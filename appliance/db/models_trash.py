"""Deleted queue entries kept for undo, and throttled queue jobs (migration 0009)."""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db.models import Base, _MessageFields


class TrashEntry(_MessageFields, Base):
    """A deleted queue entry, kept whole (same id, state, retries, body path) until it is
    restored, purged, or its grace period (`queue.trash_hours`) runs out."""

    __tablename__ = "trash"
    # The queue id it had (ids are never reused, so it is free to take back on restore).
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(String(8), default="ACTIVE")
    next_retry: Mapped[float] = mapped_column(Float, default=0.0)
    deleted: Mapped[float] = mapped_column(Float)  # when it was deleted
    deletedby: Mapped[str] = mapped_column(String(128), default="")  # who deleted it

    __table_args__ = (
        Index("ix_trash_deleted", "deleted"),
        Index("ix_trash_path", "path"),
        Index("ix_trash_msgid", "msgid"),
        Index("ix_trash_ts0", "ts0"),
    )


class TrashMetadata(Base):
    __tablename__ = "trash_metadata"
    entry_id: Mapped[int] = mapped_column(
        ForeignKey("trash.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class QueueJob(Base):
    """A throttled drain: releases, bounces or deletes matching entries at `per_minute`."""

    __tablename__ = "queue_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), default="drain")
    action: Mapped[str] = mapped_column(String(16))  # retry | bounce | delete
    filter: Mapped[str] = mapped_column(Text, default="")  # the caller's HQL filter
    restriction: Mapped[str] = mapped_column(Text, default="")  # the caller's level restriction
    per_minute: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="RUNNING")  # RUNNING | DONE | CANCELLED | FAILED
    done: Mapped[int] = mapped_column(Integer, default=0)
    cursor: Mapped[int] = mapped_column(Integer, default=0)  # entries up to this id were handled
    credit: Mapped[float] = mapped_column(Float, default=0.0)  # entries it may act on now
    last_tick: Mapped[float] = mapped_column(Float, default=0.0)
    created: Mapped[float] = mapped_column(Float)
    createdby: Mapped[str] = mapped_column(String(128), default="")
    finished: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_queue_jobs_state", "state"),)
