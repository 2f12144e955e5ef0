"""The web console's saved views, per user and page (migrations 0012, 0013)."""

from __future__ import annotations

from sqlalchemy import Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db.models import Base


class ConsoleFilter(Base):
    """One named view of one user on one page: the query string that reproduces it (tracking:
    filter, quick fields, size; rates: namespace, entry, thresholds)."""

    __tablename__ = "console_filter"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(128))
    page: Mapped[str] = mapped_column(String(32), default="tracking", server_default="tracking")
    name: Mapped[str] = mapped_column(String(100))
    query: Mapped[str] = mapped_column(Text)  # the page's query string that reproduces it
    created: Mapped[float] = mapped_column(Float)

    __table_args__ = (UniqueConstraint("username", "page", "name", name="uq_console_filter_user_page_name"),)
