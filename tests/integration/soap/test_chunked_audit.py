"""A bulk action's audit row: written before the first chunk, counted inside each chunk's own
transaction, completed or marked failed at the end (issue 17, item 11), on both stores."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.access.levels import ADMIN
from appliance.db.engine import Store
from appliance.db.models import AuditRecord
from appliance.errors import StoreUnavailable
from appliance.queue.bulk import act_on_matching
from appliance.queue.spool import Spool
from appliance.soap.calls import Call, NodeContext, Principal
from tests.integration.hql.seeding import NOW, seed


def _call(store: Store, spool: Spool) -> Call:
    node = NodeContext(store=store, spool=spool, serial="T", clock=lambda: NOW)
    return Call(node, Principal(user="admin", level=ADMIN, remote="127.0.0.1"), "mailQueueDeleteBulk")


def _rows(store: Store) -> list[tuple[str, int, str]]:
    with store.transaction(read_only=True) as s:
        return [(r.operation, r.affected, r.outcome) for r in s.scalars(select(AuditRecord))]


def test_the_row_exists_before_the_first_chunk_and_counts_each_commit(store: Store, spool: Spool) -> None:
    seed(store)
    seen: list[list[tuple[str, int, str]]] = []

    def run(progress):  # type: ignore[no-untyped-def]
        def counted(session: Session, acted: int) -> None:
            progress(session, acted)

        def after_commit(paths: list[str]) -> None:
            seen.append(_rows(store))  # what a crash right now would leave

        seen.append(_rows(store))
        return act_on_matching(store, "to~%@dest.org", "delete", now=NOW, chunk=1,
                               in_chunk=counted, on_paths=after_commit)

    assert _call(store, spool).mutate_chunked({"filter": "to~%@dest.org"}, run) == 3
    assert seen[0] == [("mailQueueDeleteBulk", 0, "started")]
    # Each chunk whose bodies were orphaned had committed its count with it.
    assert all(rows[0][2] == "started" and rows[0][1] >= 1 for rows in seen[1:])
    assert _rows(store) == [("mailQueueDeleteBulk", 3, "ok")]


def test_a_failing_chunk_leaves_the_committed_count_and_the_fault(store: Store, spool: Spool) -> None:
    seed(store)
    chunks: list[int] = []

    def run(progress):  # type: ignore[no-untyped-def]
        def counted(session: Session, acted: int) -> None:
            progress(session, acted)
            chunks.append(acted)
            if len(chunks) == 2:
                raise StoreUnavailable("disk gone")  # the second chunk rolls back, count too

        return act_on_matching(store, "to~%@dest.org", "delete", now=NOW, chunk=1, in_chunk=counted)

    with pytest.raises(StoreUnavailable):
        _call(store, spool).mutate_chunked({"filter": "to~%@dest.org"}, run)
    assert _rows(store) == [("mailQueueDeleteBulk", 1, "fault: disk gone")]
