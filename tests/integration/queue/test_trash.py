"""The trash on SQLite and PostgreSQL: a delete keeps the entry whole, a restore puts it back
exactly, a purge removes it and its body, expiry follows the grace period, the spool sweep
leaves trashed bodies alone, and drain jobs act at their rate and stop when none match."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import select

from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, QueueEntry
from appliance.db.models_trash import QueueJob, TrashEntry
from appliance.errors import Conflict, NotFound
from appliance.hql import compile_filter
from appliance.queue import jobs, trash
from appliance.queue.bulk import act_on_matching
from appliance.queue.spool import Spool
from appliance.queue.store import enqueue, metadata_of, set_metadata
from appliance.queue.sweep import sweep
from appliance.types import Envelope, NewMessage, QueueState

NOW = 1_800_000_000.0
_LEASE = ("lease_until", "lease_owner")


def _queue(store: Store, spool: Spool, *rcpts: str, state: QueueState = QueueState.DEFER,
           metadata: dict[str, str] | None = None) -> list[int]:
    msgid = str(uuid.uuid4())
    path = spool.write(msgid, f"Subject: s\r\n\r\nbody {msgid}\r\n".encode())
    with store.transaction() as s:
        return enqueue(s, NewMessage(msgid=msgid, envelope=Envelope(sender="s@a.test", recipients=rcpts),
                                     path=path, size=20, subject="s", received=NOW - 100,
                                     state=state, metadata=metadata or {}), now=NOW - 100)


def _snapshot(store: Store) -> dict[int, tuple[dict[str, object], dict[str, str]]]:
    with store.transaction(read_only=True) as s:
        rows = list(s.scalars(select(QueueEntry).order_by(QueueEntry.id)))
        meta = metadata_of(s, [r.id for r in rows])
        return {r.id: ({c.key: getattr(r, c.key) for c in QueueEntry.__table__.columns
                        if c.key not in _LEASE}, meta.get(r.id, {})) for r in rows}


def _actions(store: Store, queueid: int) -> list[str]:
    with store.transaction(read_only=True) as s:
        return list(s.scalars(select(HistoryEntry.action).where(HistoryEntry.queueid == queueid)
                              .order_by(HistoryEntry.id)))


def test_delete_then_restore_gives_back_every_field_and_the_body(store: Store, spool: Spool) -> None:
    kept = _queue(store, spool, "k@keep.test")
    gone = _queue(store, spool, "a@gone.test", "b@gone.test", metadata={"tag": "x", "n": "1"})
    gone += _queue(store, spool, "c@gone.test", state=QueueState.HOLD)
    with store.transaction() as s:
        entry = s.get(QueueEntry, gone[0])
        assert entry is not None
        entry.retries, entry.error, entry.next_retry = 4, "451 later", NOW + 900
        set_metadata(s, gone[2], "only", "c")
    before = _snapshot(store)
    removed: list[str] = []
    n = act_on_matching(store, "to~%@gone.test", "delete", now=NOW, chunk=2, trash_by="ops",
                        on_paths=removed.extend)
    assert n == 3 and removed == []  # the trash keeps the bodies
    assert list(_snapshot(store)) == kept
    for queueid in gone:
        assert _actions(store, queueid) == ["DELETE"]
        assert spool.exists(before[queueid][0]["path"])  # type: ignore[arg-type]
    with store.transaction(read_only=True) as s:
        rows, total = trash.search(s, compile_filter("deletedby=ops", trash=True), offset=0,
                                   limit=10, with_total=True)
        assert total == 3 and {r.id for r in rows} == set(gone)
        assert {r.deleted for r in rows} == {NOW}
        assert trash.count(s, compile_filter("queue=HOLD retries=0", trash=True)) == 1
        assert trash.count(s, compile_filter("deleted<" + str(int(NOW)), trash=True)) == 0
        assert trash.metadata_of(s, gone)[gone[0]] == {"tag": "x", "n": "1"}

    assert trash.restore(store, compile_filter("to~%@gone.test", trash=True), now=NOW + 5,
                         chunk=2) == 3
    assert _snapshot(store) == before
    for queueid in gone:
        assert _actions(store, queueid) == ["DELETE", "RESTORE"]
    with store.transaction(read_only=True) as s:
        assert trash.count(s, None) == 0


def test_restricted_restore_and_purge_touch_only_what_matches(store: Store, spool: Spool) -> None:
    ids = _queue(store, spool, "a@one.test", "b@two.test")  # two recipients, one body
    path = _snapshot(store)[ids[0]][0]["path"]
    assert act_on_matching(store, "", "delete", now=NOW, trash_by="ops") == 2
    removed: list[str] = []
    assert trash.purge(store, compile_filter("to~%@one.test", trash=True), now=NOW,
                       on_paths=removed.extend) == 1
    assert removed == []  # b@two.test (trashed) still holds the body
    assert trash.restore(store, compile_filter("to~%@two.test", trash=True), now=NOW) == 1
    assert list(_snapshot(store)) == [ids[1]]
    assert act_on_matching(store, "", "delete", now=NOW, trash_by="ops") == 1
    assert trash.purge(store, None, now=NOW, on_paths=removed.extend) == 1
    assert removed == [path]


def test_expiry_follows_the_grace_period(store: Store, spool: Spool) -> None:
    ids = _queue(store, spool, "a@x.test")
    first_path = _snapshot(store)[ids[0]][0]["path"]
    act_on_matching(store, "", "delete", now=NOW - 7200, trash_by="ops")
    ids += _queue(store, spool, "b@x.test")
    act_on_matching(store, "", "delete", now=NOW - 60, trash_by="ops")
    removed: list[str] = []
    assert trash.purge(store, trash.expired_condition(now=NOW, hours=1), now=NOW,
                       on_paths=removed.extend) == 1
    with store.transaction(read_only=True) as s:
        assert [r.id for r in trash.first(s, None, limit=10)] == [ids[1]]
    assert removed == [first_path]


def test_the_spool_sweep_keeps_trashed_bodies(store: Store, spool: Spool) -> None:
    ids = _queue(store, spool, "a@x.test")
    path = str(_snapshot(store)[ids[0]][0]["path"])
    act_on_matching(store, "", "delete", now=NOW, trash_by="ops")
    old = NOW - 10 * 86400
    os.utime(spool.root / path, (old, old))
    report = sweep(store, spool, now=NOW, grace=60)
    assert report.orphans_removed == 0 and spool.exists(path)
    trash.purge(store, None, now=NOW)  # the body is now an orphan: the next sweep takes it
    assert sweep(store, spool, now=NOW, grace=60).orphans_removed == 1


def test_a_drain_acts_at_its_rate_and_ends_when_none_match(store: Store, spool: Spool) -> None:
    ids = [i for _ in range(5) for i in _queue(store, spool, "r@drain.test", state=QueueState.HOLD)]
    _queue(store, spool, "r@other.test", state=QueueState.HOLD)
    with store.transaction() as s:
        job_id = jobs.create(s, filter="to~%@drain.test", action="retry", per_minute=120,
                             restriction="", by="ops", now=NOW)
    steps = []
    for t in (0.4, 1.0, 1.2, 10.0, 11.0, 12.0):  # 2 per second, never more than 2 at once
        result = jobs.step(store, job_id, now=NOW + t, bounce_many=None, trash_by=lambda j: "x")
        steps.append(result.acted)
    assert steps == [0, 2, 0, 2, 1, 0]
    with store.transaction(read_only=True) as s:
        job = s.get(QueueJob, job_id)
        assert job is not None and job.state == jobs.DONE and job.done == 5
        states = {i: st for i, st in s.execute(select(QueueEntry.id, QueueEntry.state))}
    assert {states[i] for i in ids} == {"ACTIVE"} and "HOLD" in states.values()


def test_a_delete_drain_goes_to_the_trash_and_a_job_can_be_cancelled(store: Store, spool: Spool) -> None:
    ids = [i for _ in range(3) for i in _queue(store, spool, "r@drain.test")]
    with store.transaction() as s:
        job_id = jobs.create(s, filter="", action="delete", per_minute=60, restriction="",
                             by="ops", now=NOW)
    jobs.step(store, job_id, now=NOW + 1, bounce_many=None, trash_by=lambda j: f"{j.createdby}!")
    with store.transaction(read_only=True) as s:
        assert [(r.id, r.deletedby) for r in s.scalars(select(TrashEntry))] == [(ids[0], "ops!")]
        (shown,) = jobs.list_jobs(s, restriction=None, now=NOW + 1)
        assert (shown.done, shown.remaining, shown.state, shown.eta) == (1, 2, "RUNNING", 2.0)
        assert jobs.list_jobs(s, restriction="to~%@tenant.test", now=NOW) == []
    with store.transaction() as s:
        with pytest.raises(NotFound):
            jobs.cancel(s, job_id, restriction="to~%@tenant.test", now=NOW)
        jobs.cancel(s, job_id, restriction=None, now=NOW + 2)
    assert jobs.step(store, job_id, now=NOW + 5, bounce_many=None, trash_by=str).acted == 0
    with store.transaction() as s:
        with pytest.raises(Conflict):
            jobs.cancel(s, job_id, restriction=None, now=NOW + 3)
    assert len(_snapshot(store)) == 2


def test_pure_parts() -> None:
    assert jobs.credit_after(0.0, per_minute=60, elapsed=3600) == 1.0  # capped: no burst
    assert jobs.credit_after(0.5, per_minute=60, elapsed=0.25) == 0.75
    assert jobs.burst(6000) == 100.0 and jobs.eta(30, 60) == 30.0
    from appliance.queue.keeper import purge_interval
    assert purge_interval(24) == 60.0 and purge_interval(0.0005) == 1.0
