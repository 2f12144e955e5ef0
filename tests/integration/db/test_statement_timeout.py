"""A statement that runs past the thread's statement timeout is stopped, cleanly, on both stores."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select, text

from appliance.db.engine import Store
from appliance.db.models import NodeInfo
from appliance.errors import QueryTimeout


def _slow(store: Store) -> str:
    """A query that would run for minutes: an unbounded count on SQLite, a sleep on PostgreSQL."""
    if store.is_sqlite:
        return ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                "SELECT count(*) FROM c")
    return "SELECT pg_sleep(300)"


@pytest.mark.parametrize("read_only", [True, False])
def test_slow_statement_is_stopped(store: Store, read_only: bool) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match=r"statement timeout \(0.3 s\)"):
        with store.statement_timeout(0.3), store.transaction(read_only=read_only) as session:
            if not read_only:
                session.add(NodeInfo(key="half-done", value="x"))
                session.flush()
            session.execute(text(_slow(store)))
    # Measured bound the issue asks for: stopped near the deadline, not after the query.
    assert time.monotonic() - started < 10
    with store.transaction(read_only=True) as session:
        # Nothing of the stopped transaction stays; the connection is usable again.
        assert session.scalar(select(func.count()).select_from(NodeInfo)
                              .where(NodeInfo.key == "half-done")) == 0


def test_no_timeout_outside_the_block_and_fast_statements_pass(store: Store) -> None:
    with store.statement_timeout(5.0):
        with store.transaction() as session:
            session.add(NodeInfo(key="k", value="v"))
        with store.statement_timeout(None), store.transaction(read_only=True) as session:
            assert session.scalar(text("SELECT 1")) == 1
    if store.is_sqlite:
        # The handler is gone once the block ends: a long (bounded) statement runs to its end.
        with store.transaction(read_only=True) as session:
            n = session.scalar(text("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
                                    "FROM c WHERE x < 300000) SELECT count(*) FROM c"))
        assert n == 300000
    else:
        with store.transaction(read_only=True) as session:
            assert session.scalar(text("SHOW statement_timeout")) == "0"
