"""The web console's saved tracking filters, per user (migration 0012)."""

from __future__ import annotations

from sqlalchemy import Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db.models import Base


class ConsoleFilter(Base):
    """One named tracking view of one user: its query string (filter, quick fields, size)."""

    __tablename__ = "console_filter"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(100))
    query: Mapped[str] = mapped_column(Text)  # the /tracking query string that reproduces it
    created: Mapped[float] = mapped_column(Float)

    __table_args__ = (UniqueConstraint("username", "name", name="uq_console_filter_user_name"),)
