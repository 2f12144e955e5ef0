"""Config revisions, per-node overrides and cluster membership (local store or shared store)."""

from __future__ import annotations

from sqlalchemy import Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db.models import Base


class ConfigRevision(Base):
    """One committed config text; ids only grow, a revert is a new revision."""

    __tablename__ = "config_revision"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float)
    author: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)


class ConfigOverride(Base):
    """A node-specific key (e.g. `listeners.inbound.port`) applied on top of the shared text."""

    __tablename__ = "config_override"
    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    ts: Mapped[float] = mapped_column(Float)
    author: Mapped[str] = mapped_column(String(128), default="")


class ClusterNode(Base):
    """A member of the cluster, kept in the shared store; `lastseen` is its last heartbeat."""

    __tablename__ = "cluster_node"
    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    url: Mapped[str] = mapped_column(Text, default="")
    joined: Mapped[float] = mapped_column(Float)
    lastseen: Mapped[float] = mapped_column(Float)
    revision: Mapped[int] = mapped_column(Integer, default=0)  # the shared revision it runs
    problem: Mapped[str] = mapped_column(Text, default="")  # why it could not apply the newest

    __table_args__ = (Index("ix_cluster_node_lastseen", "lastseen"),)
