"""DMARC evaluations kept for the aggregate reports (RFC 7489 §7.2), migration 0011."""

from __future__ import annotations

from sqlalchemy import Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db.models import Base


class DmarcEvaluation(Base):
    """One message's DMARC evaluation: its identifiers, results and the policy as published."""

    __tablename__ = "dmarc_evaluations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float)
    policy_domain: Mapped[str] = mapped_column(String(255))  # where the record was found
    header_from: Mapped[str] = mapped_column(String(255))
    envelope_from: Mapped[str] = mapped_column(String(255), default="")
    source_ip: Mapped[str] = mapped_column(String(64))
    disposition: Mapped[str] = mapped_column(String(16))
    dkim_aligned: Mapped[str] = mapped_column(String(8))  # pass / fail
    spf_aligned: Mapped[str] = mapped_column(String(8))
    override: Mapped[str] = mapped_column(String(32), default="")  # e.g. sampled_out
    p: Mapped[str] = mapped_column(String(16))
    sp: Mapped[str] = mapped_column(String(16))
    pct: Mapped[int] = mapped_column(Integer, default=100)
    adkim: Mapped[str] = mapped_column(String(1), default="r")
    aspf: Mapped[str] = mapped_column(String(1), default="r")
    fo: Mapped[str] = mapped_column(String(16), default="0")
    rua: Mapped[str] = mapped_column(Text, default="")  # JSON [[address, size limit], ...]
    ruf: Mapped[str] = mapped_column(Text, default="")
    spf_domain: Mapped[str] = mapped_column(String(255), default="")
    spf_scope: Mapped[str] = mapped_column(String(8), default="mfrom")
    spf_result: Mapped[str] = mapped_column(String(16))
    dkim: Mapped[str] = mapped_column(Text, default="[]")  # JSON [[domain, selector, result], ...]

    __table_args__ = (Index("ix_dmarc_evaluations_domain_ts", "policy_domain", "ts"),)
