"""Bounce notices: bulk-bounced messages whose DSN is still to be written (migration 0014)."""

from __future__ import annotations

from sqlalchemy import Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db.models import Base


class BounceNotice(Base):
    """One bounced message's DSN, owed to its sender: committed with the bounce (its recipients'
    BOUNCE history rows, their entries removed) and turned into a queued DSN, then deleted, in
    one later transaction by the bounce notifier (bounce.notices), as Postfix's bounce daemon
    works from its logs. While it exists, it keeps the original's body (`path`) in the spool:
    the DSN quotes the original's headers."""

    __tablename__ = "bounce_notices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created: Mapped[float] = mapped_column(Float)  # when the message was bounced
    msgid: Mapped[str] = mapped_column(String(36))  # the original's
    sender: Mapped[str] = mapped_column(Text)  # the original's envelope sender: the DSN's recipient
    subject: Mapped[str] = mapped_column(Text, default="")
    ts0: Mapped[float] = mapped_column(Float)  # the original's arrival
    path: Mapped[str] = mapped_column(Text, default="")  # the original's spool body
    transport: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(Text)  # the diagnostic of every recipient
    recipients: Mapped[str] = mapped_column(Text)  # JSON: [[address, queue id], ...]

    __table_args__ = (Index("ix_bounce_notices_path", "path"),)
