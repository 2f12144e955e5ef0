"""OR'ed metadata terms cost one lookup, not one per entry and term (issue: 300 terms, 161 s)."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import insert, text

from appliance.db.engine import Store
from appliance.db.models import QueueEntry, QueueMetadata
from appliance.queue.query import count, search

ENTRIES = 20000
TENANTS = 1000


def _seed(store: Store) -> None:
    rows = [
        dict(msgid=str(uuid.UUID(int=i + 1, version=4)), ts0=1_700_000_000.0 + i, ts=0.0,
             sender="a@example.com", sender_domain="example.com", rcpt=f"r{i}@dest.test",
             rcpt_domain="dest.test", subject=f"s{i}", path=f"p{i}", state="ACTIVE")
        for i in range(ENTRIES)
    ]
    with store.engine.begin() as conn:
        conn.execute(insert(QueueEntry), rows)
        ids = [r[0] for r in conn.execute(text("SELECT id FROM queue ORDER BY id"))]
        conn.execute(insert(QueueMetadata), [
            m for n, entry_id in enumerate(ids) for m in (
                dict(entry_id=entry_id, key="tenant", value=f"t{n % TENANTS}"),
                dict(entry_id=entry_id, key="score", value=str(n % 10)))])
        conn.execute(text("ANALYZE"))


def test_300_ored_metadata_terms_within_a_bound(store: Store) -> None:
    _seed(store)
    terms = [f"metadata.tenant=t{i * 3}" for i in range(300)]
    hql = " or ".join(terms[:150]) + " or metadata.score~9 or " + " or ".join(terms[150:])
    started = time.monotonic()
    with store.transaction(read_only=True) as session:
        total = count(session, hql)
        page, _ = search(session, hql, offset=0, limit=100)
    elapsed = time.monotonic() - started
    # Every third tenant (20 entries each) plus score 9 (every tenth entry), without overlap:
    # tenants t0, t3, ... have n % 3 == 0; of those, n % 10 == 9 are counted once.
    expected = sum(1 for n in range(ENTRIES) if (n % TENANTS) % 3 == 0 and n % TENANTS < 900
                   or n % 10 == 9)
    assert total == expected
    assert len(page) == 100 and page[0].ts0 == 1_700_000_000.0 + ENTRIES - 1
    assert elapsed < 5.0, f"{elapsed:.1f} s"  # was minutes before one lookup per filter
