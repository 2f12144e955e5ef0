"""Message events (the timeline), queue suspensions and saved queries with alerts (migration 0010)."""

from __future__ import annotations

from sqlalchemy import Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db.models import Base


class MessageEvent(Base):
    """One thing that happened to a message (or one recipient's entry of it), in the same
    transaction as the queue or history rows it explains."""

    __tablename__ = "message_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    msgid: Mapped[str] = mapped_column(String(36))
    queueid: Mapped[int] = mapped_column(Integer, default=0)  # 0: the message as a whole
    ts: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    ref: Mapped[str] = mapped_column(String(36), default="")  # a related msgid (relayed from)

    __table_args__ = (
        Index("ix_message_events_msgid", "msgid", "ts"),
        Index("ix_message_events_ref", "ref"),
        Index("ix_message_events_queueid", "queueid"),
        {"sqlite_autoincrement": True},
    )


class Suspension(Base):
    """Delivery of every entry matching `filter` is held while `state` is active."""

    __tablename__ = "queue_suspensions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    filter: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(128), default="")
    created: Mapped[float] = mapped_column(Float)
    expires: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(8), default="active")  # active | expired | removed
    ended: Mapped[float] = mapped_column(Float, default=0.0)

    __table_args__ = (Index("ix_queue_suspensions_state", "state", "expires"),)


class SavedQuery(Base):
    """A user's saved HQL query with an alert threshold: above `threshold` for `minutes`."""

    __tablename__ = "saved_queries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    filter: Mapped[str] = mapped_column(Text, default="")
    threshold: Mapped[int] = mapped_column(Integer)
    minutes: Mapped[float] = mapped_column(Float, default=0.0)
    mail_to: Mapped[str] = mapped_column(Text, default="")
    webhook: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(8), default="ok")  # ok | firing
    since: Mapped[float] = mapped_column(Float, default=0.0)  # in this state since
    above_since: Mapped[float] = mapped_column(Float, default=0.0)  # count above threshold since (0: not)
    last_count: Mapped[int] = mapped_column(Integer, default=0)
    last_checked: Mapped[float] = mapped_column(Float, default=0.0)

    __table_args__ = (UniqueConstraint("owner", "name", name="uq_saved_queries_owner_name"),)
