"""The P3 searches use an index, not a full scan, when ordered by ts0 with a limit."""

from __future__ import annotations

import uuid

from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connection

from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.db.models_hql import SUBJECT_FTS
from appliance.hql import compile_filter

ROWS = 4000


def _fill(store: Store) -> None:
    rows = [
        dict(msgid=str(uuid.UUID(int=i, version=4)), ts0=1_700_000_000.0 + i, ts=0.0,
             sender=f"User{i % 500}@Sender{i % 50}.example", sender_domain=f"sender{i % 50}.example",
             rcpt=f"r{i}@rcpt{i % 200}.test", rcpt_domain=f"rcpt{i % 200}.test", subject=f"s{i}",
             size=i, listener="in", transport="mx", fromserver="", helo="", sasl="", action="",
             quarantine="", description="", error="", retries=0, path=f"p{i}", actionid=0,
             jobid="", score=0.0, is_dsn=0, state="ACTIVE", next_retry=0.0, lease_until=0.0,
             lease_owner="")
        for i in range(ROWS)
    ]
    with store.engine.begin() as conn:
        conn.execute(insert(QueueEntry), rows)
        conn.execute(text("ANALYZE"))


def _plan(store: Store, conn: Connection, hql: str) -> str:
    stmt = (select(QueueEntry).where(compile_filter(hql))
            .order_by(QueueEntry.ts0.desc(), QueueEntry.id.desc()).limit(100))
    compiled = stmt.compile(store.engine)
    if store.is_sqlite:
        params = tuple(compiled.params[k] for k in compiled.positiontup or [])
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
        return "\n".join(r[-1] for r in rows)
    # Few rows make a sequential scan the honest choice; forbid it so the plan shows the index.
    conn.execute(text("SET enable_seqscan = off"))
    return "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled}", dict(compiled.params)))


CASES = [
        (f"messageid={uuid.UUID(int=1234, version=4)}", "ix_queue_msgid"),
        ("from=user7@SENDER7.example", "ix_queue_sender_lc"),
        ("to~%@rcpt17.test", "ix_queue_rcpt_domain"),
        ("from~%@sender3.example", "ix_queue_sender_domain"),
        ("time>1700003900", "ix_queue_ts0"),
]


def test_searches_use_indexes(store: Store) -> None:
    _fill(store)
    plans = {}
    with store.engine.connect() as conn:
        for hql, _ in CASES:
            plans[hql] = _plan(store, conn, hql)
    for hql, index in CASES:
        plan = plans[hql]
        assert index in plan, plan
        assert "Seq Scan" not in plan and "SCAN queue\n" not in plan + "\n", plan


def test_subject_contains_uses_the_text_index(store: Store) -> None:
    _fill(store)
    with store.engine.connect() as conn:
        plans = {hql: _plan(store, conn, hql) for hql in ("subject~s1234", "subject~%S12%4")}
    for hql, plan in plans.items():
        if store.is_sqlite:
            # The FTS5 table finds the candidates; queue rows are then read by id.
            assert f"SCAN {SUBJECT_FTS} VIRTUAL TABLE INDEX" in plan, plan
            assert "USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
            assert "SCAN queue\n" not in plan + "\n" and "ix_queue_ts0" not in plan, plan
        else:
            # The matching ids come from the trigram index once; entries then by primary key.
            assert "Bitmap Index Scan on ix_queue_subject_trgm" in plan, plan
            assert "queue_pkey" in plan and "Seq Scan" not in plan, plan
