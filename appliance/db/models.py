"""ORM models of the node's store; Alembic migrations are the only way the schema changes."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class NodeInfo(Base):
    """Key/value facts about this node (its serial, first start)."""

    __tablename__ = "node_info"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class _MessageFields:
    """Fields a queue entry and a history row share, named after the API's `msg*` fields."""

    msgid: Mapped[str] = mapped_column(String(36))
    ts0: Mapped[float] = mapped_column(Float)  # received
    ts: Mapped[float] = mapped_column(Float)  # last change
    sender: Mapped[str] = mapped_column(Text)  # envelope MAIL FROM, as given ('' for <>)
    sender_domain: Mapped[str] = mapped_column(String(255))  # lower-case, for domain search
    rcpt: Mapped[str] = mapped_column(Text)  # envelope RCPT TO, as given
    rcpt_domain: Mapped[str] = mapped_column(String(255))  # lower-case
    subject: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    listener: Mapped[str] = mapped_column(String(64), default="")
    transport: Mapped[str] = mapped_column(String(64), default="")
    fromserver: Mapped[str] = mapped_column(String(64), default="")  # client IP
    helo: Mapped[str] = mapped_column(Text, default="")
    sasl: Mapped[str] = mapped_column(Text, default="")
    action: Mapped[str] = mapped_column(String(16), default="")
    quarantine: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    retries: Mapped[int] = mapped_column(Integer, default=0)
    path: Mapped[str] = mapped_column(Text, default="")  # spool file, relative to the spool dir
    actionid: Mapped[int] = mapped_column(Integer, default=0)
    jobid: Mapped[str] = mapped_column(String(64), default="")
    score: Mapped[float] = mapped_column(Float, default=0.0)
    is_dsn: Mapped[int] = mapped_column(Integer, default=0)  # 1 for bounces: never bounced


class QueueEntry(_MessageFields, Base):
    """One recipient's copy of a queued message (the API's queue id is `id`)."""

    __tablename__ = "queue"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    state: Mapped[str] = mapped_column(String(8), default="ACTIVE")  # ACTIVE | DEFER | HOLD
    next_retry: Mapped[float] = mapped_column(Float, default=0.0)
    lease_until: Mapped[float] = mapped_column(Float, default=0.0)  # claimed by a worker until
    lease_owner: Mapped[str] = mapped_column(String(64), default="")

    __table_args__ = (
        Index("ix_queue_msgid", "msgid"),
        Index("ix_queue_ts0", "ts0"),
        Index("ix_queue_state_next", "state", "next_retry"),
        Index("ix_queue_transport", "transport"),
        # Domain lookups use the (domain, ts0) indexes of models_hql (migration 0008 dropped the rest).
        # Ids are never reused: `msgid:queueid` and history's queueid must name one entry.
        {"sqlite_autoincrement": True},
    )


class QueueMetadata(Base):
    __tablename__ = "queue_metadata"
    entry_id: Mapped[int] = mapped_column(
        ForeignKey("queue.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_queue_metadata_kv", "key", "value"),)


class HistoryEntry(_MessageFields, Base):
    """One final outcome (or a scheduled retry) of one recipient's copy."""

    __tablename__ = "history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    queueid: Mapped[int] = mapped_column(Integer)
    transfertime: Mapped[float] = mapped_column(Float, default=0.0)

    __table_args__ = (
        Index("ix_history_msgid", "msgid"),
        Index("ix_history_queueid", "queueid"),
        Index("ix_history_ts0", "ts0"),
        Index("ix_history_action", "action"),
        {"sqlite_autoincrement": True},
    )


class HistoryMetadata(Base):
    __tablename__ = "history_metadata"
    entry_id: Mapped[int] = mapped_column(
        ForeignKey("history.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_history_metadata_kv", "key", "value"),)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    pwhash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))  # admin | readonly | custom
    operations: Mapped[str] = mapped_column(Text, default="")  # custom: allowed ops, JSON list
    restriction: Mapped[str] = mapped_column(Text, default="")  # custom: HQL joined with &&
    command_patterns: Mapped[str] = mapped_column(Text, default="")  # custom: JSON list of globs
    created: Mapped[float] = mapped_column(Float)


class AuditRecord(Base):
    """One mutating call: who, from where, what, with which arguments, how many affected."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float)
    username: Mapped[str] = mapped_column(String(128))
    remote: Mapped[str] = mapped_column(String(64), default="")
    operation: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[str] = mapped_column(Text, default="")  # JSON
    affected: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(Text, default="ok")

    __table_args__ = (Index("ix_audit_ts", "ts"),)


# Case-insensitive address equality (`from=`, `to=`) must use an index (API.md, HQL).
for _model in (QueueEntry, HistoryEntry):
    _name = _model.__tablename__
    Index(f"ix_{_name}_sender_lc", func.lower(_model.sender))
    Index(f"ix_{_name}_rcpt_lc", func.lower(_model.rcpt))
import appliance.db.models_stats  # noqa: E402,F401  (stats tables, migration 0002)
import appliance.db.models_config  # noqa: E402,F401  (config tables, migration 0003)
import appliance.db.models_hql  # noqa: E402,F401  (HQL search indexes, migrations 0004 and 0007)
import appliance.db.models_access  # noqa: E402,F401  (login throttle, migration 0005)
import appliance.db.models_trash  # noqa: E402,F401  (trash and queue jobs, migration 0009)
import appliance.db.models_timeline  # noqa: E402,F401  (events, suspensions, alerts, migration 0010)
import appliance.db.models_mailauth  # noqa: E402,F401  (DMARC evaluations, migration 0011)
import appliance.db.models_console  # noqa: E402,F401  (console saved filters, migration 0012)
import appliance.db.models_bounce  # noqa: E402,F401  (bounce notices, migration 0014)
