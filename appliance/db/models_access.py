"""Login throttle counters shared by every process of a node (migration 0005)."""

from __future__ import annotations

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db.models import Base


class LoginThrottle(Base):
    """Failed logins of one key (`u:ADDRESS USER` or `a:ADDRESS`) in the current window."""

    __tablename__ = "login_throttle"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[float] = mapped_column(Float)
    blocked_until: Mapped[float] = mapped_column(Float, default=0.0)
    expires: Mapped[float] = mapped_column(Float)  # when the row means nothing any more

    __table_args__ = (Index("ix_login_throttle_expires", "expires"),)
