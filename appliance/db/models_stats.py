"""ORM models of statistics: stat() counters, pending mail actions, stored rate() hits."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db.models import Base


class StatCounter(Base):
    """One stat(key1, key2, key3) counter; `created` is kept across flushes, `updated` moves."""

    __tablename__ = "stat_counter"
    key1: Mapped[str] = mapped_column(String(255), primary_key=True)
    key2: Mapped[str] = mapped_column(String(255), primary_key=True)
    key3: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)


class StatPendingAction(Base):
    """A history row not yet folded into the mail:action counters.

    A database trigger (migration 0002) inserts one per history insert, in the same
    transaction; the stats flusher deletes what it folds in the transaction that adds the
    counts. So each action is counted exactly once, whatever order transactions commit in.
    """

    __tablename__ = "stat_pending_action"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(16))
    listener: Mapped[str] = mapped_column(String(64))
    domain: Mapped[str] = mapped_column(String(255))


class RateHit(Base):
    """One counted rate() call, written behind from the node's memory (appliance.stats.rates);
    hits older than their window are pruned."""

    __tablename__ = "rate_hit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ns: Mapped[str] = mapped_column(String(128))
    entry: Mapped[str] = mapped_column(String(255))
    interval: Mapped[int] = mapped_column(Integer)
    ts: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_rate_hit_key_ts", "ns", "entry", "interval", "ts"),)
