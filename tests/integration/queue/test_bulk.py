"""Bulk retry/hold/delete/bounce over HQL, in chunks, on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import functools
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.bounce.handling import bounce_all, bounce_entry
from appliance.bounce.notices import pending, write_dsns
from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, QueueEntry
from appliance.errors import InvalidInput
from appliance.hql import compile_filter, restrict
from appliance.queue.bulk import act_on_matching
from appliance.queue.query import count
from appliance.queue.spool import Spool
from appliance.db.schema import upgrade
from appliance.queue.store import delete, enqueue, finish, metadata_of
from appliance.types import Action, Envelope, NewMessage
from tests.integration.hql.seeding import NOW, seed


def rcpts(store: Store, hql: str = "", *, history: bool = False) -> list[str]:
    model = HistoryEntry if history else QueueEntry
    with store.transaction(read_only=True) as s:
        return sorted(s.scalars(select(model.rcpt).where(compile_filter(hql, history=history))))


@pytest.mark.parametrize("chunk", [1, 2, 500])
def test_delete_in_chunks_hands_orphans_over_after_commit(store: Store, chunk: int) -> None:
    seed(store)
    seen: list[list[str]] = []

    def on_paths(paths: list[str]) -> None:
        # Called after the commit: a fresh transaction no longer sees the entries.
        with store.transaction(read_only=True) as s:
            assert count(s, "to~%@dest.org") < 3
        seen.append(paths)

    n = act_on_matching(store, "to~%@dest.org", "delete", now=NOW, chunk=chunk, on_paths=on_paths)
    assert n == 3
    assert rcpts(store) == ["dave@other.net", "x@[192.0.2.9]"]
    assert rcpts(store, "action=DELETE to~%@dest.org", history=True) == [
        "Carol@Dest.ORG", "bob@dest.org", "frank@dest.org"]
    # a/… is orphaned once bob and carol are both gone, c/… once frank is; each reported once.
    flat = [p for paths in seen for p in paths]
    assert sorted(p.split("/")[0] for p in flat) == ["a", "c"]


def test_orphans_are_removed_beside_the_next_chunk_and_a_failure_there_is_raised(store: Store) -> None:
    seed(store)
    handed: list[tuple[str, list[str]]] = []

    def on_paths(paths: list[str]) -> None:
        handed.append((threading.current_thread().name, paths))
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        act_on_matching(store, "to~%@dest.org", "delete", now=NOW, chunk=1, on_paths=on_paths)
    # Handed over once, off the caller's thread (bob's and Carol's body, once both are gone);
    # those chunks stay committed, and frank's, acted on meanwhile, waited for the removal
    # before its commit and was rolled back.
    assert [name for name, _ in handed] == ["bulk-orphans"]
    assert rcpts(store, "action=DELETE to~%@dest.org", history=True) == ["Carol@Dest.ORG", "bob@dest.org"]
    assert rcpts(store, "to~%@dest.org") == ["frank@dest.org"]


def test_hold_and_retry(store: Store) -> None:
    seed(store)
    assert act_on_matching(store, "transport=mx", "hold", now=NOW) == 3
    assert rcpts(store, "queue=HOLD") == ["Carol@Dest.ORG", "bob@dest.org", "frank@dest.org"]
    assert act_on_matching(store, "queue=HOLD or queue=DEFER", "retry", now=NOW, chunk=2) == 4
    assert rcpts(store, "queue=ACTIVE") == sorted(
        ["Carol@Dest.ORG", "bob@dest.org", "frank@dest.org", "dave@other.net", "x@[192.0.2.9]"])


def test_retry_duplicate_copies_each_entry_once(store: Store) -> None:
    seed(store)
    n = act_on_matching(store, "to~%@dest.org", "retry", now=NOW, duplicate=True, chunk=1)
    assert n == 3  # the copies match too but were added while running: not acted on again
    assert rcpts(store, "to~%@dest.org") == sorted(["Carol@Dest.ORG", "bob@dest.org", "frank@dest.org"] * 2)


def test_restriction_limits_bulk(store: Store) -> None:
    seed(store)
    n = act_on_matching(store, restrict("to~%@other.net", "size>0"), "delete", now=NOW)
    assert n == 1
    assert "dave@other.net" not in rcpts(store) and len(rcpts(store)) == 4


def test_nothing_matches(store: Store) -> None:
    seed(store)
    assert act_on_matching(store, "to~%@nowhere.test", "delete", now=NOW) == 0
    assert len(rcpts(store)) == 5


def test_empty_queue(store: Store) -> None:
    assert act_on_matching(store, "", "hold", now=NOW) == 0


def test_bounce_with_the_bounce_handler(store: Store, spool: Spool) -> None:
    seed(store)
    with store.transaction(read_only=True) as s:
        for entry in s.scalars(select(QueueEntry).where(QueueEntry.rcpt_domain == "dest.org")):
            (spool.root / entry.path).parent.mkdir(parents=True, exist_ok=True)
            (spool.root / entry.path).write_bytes(b"Subject: hi\r\n\r\nbody\r\n")
    bounce = functools.partial(bounce_entry, spool=spool, reason="bulk bounce by admin", now=NOW,
                               hostname="node.test")
    orphans: list[str] = []
    n = act_on_matching(store, "to~%@dest.org", "bounce", now=NOW, bounce=_positional(bounce),
                        on_paths=orphans.extend)
    assert n == 3
    assert rcpts(store, "action=BOUNCE", history=True) == ["Carol@Dest.ORG", "bob@dest.org", "frank@dest.org"]
    # One DSN per bounced entry, to the senders of a (twice) and c, from the null reverse-path
    # (dave@other.net is the DSN that was already queued).
    assert sorted(r.lower() for r in rcpts(store, 'from=""')) == [
        "alice@example.com", "alice@example.com", "dave@other.net", "eve@example.com"]
    assert sorted(p.split("/")[0] for p in orphans) == ["a", "c"]


def _positional(bounce: functools.partial[str | None]):  # type: ignore[no-untyped-def]
    def call(session: Session, entry: QueueEntry) -> str | None:
        return bounce(session, entry=entry)
    return call


def test_failure_leaves_chunks_done_or_untouched(store: Store) -> None:
    seed(store)
    calls: list[str] = []

    def flaky(session: Session, entry: QueueEntry) -> str | None:
        calls.append(entry.rcpt)
        if len(calls) == 3:
            raise OSError("disk full")
        return finish(session, entry, Action.BOUNCE, now=NOW)

    with pytest.raises(OSError) as e:
        act_on_matching(store, "", "bounce", now=NOW, chunk=2, bounce=flaky)
    assert e.value.bulk_done == 2  # type: ignore[attr-defined]
    assert any("2 entries were handled" in note for note in e.value.__notes__)
    done = rcpts(store, "action=BOUNCE", history=True)
    assert done == sorted(calls[:2])
    # The failing chunk was rolled back as a whole: its first entry is still queued, unchanged.
    assert calls[2] in rcpts(store) and calls[3:] == []
    assert len(rcpts(store)) == 3


@pytest.mark.parametrize(
    ("action", "kwargs", "problem"),
    [
        ("explode", {}, "unknown bulk action"),
        ("delete", {"chunk": 0}, "chunk must be"),
        ("delete", {"chunk": 10**6}, "chunk must be"),
        ("bounce", {}, "needs a bounce function"),
    ],
)
def test_bad_arguments_change_nothing(store: Store, action: str, kwargs: dict[str, int], problem: str) -> None:
    seed(store)
    with pytest.raises(InvalidInput, match=problem):
        act_on_matching(store, "", action, now=NOW, **kwargs)  # type: ignore[arg-type]
    assert len(rcpts(store)) == 5


def test_bad_filter_changes_nothing(store: Store) -> None:
    seed(store)
    with pytest.raises(InvalidInput, match="unknown field"):
        act_on_matching(store, "frm=x", "delete", now=NOW)
    assert len(rcpts(store)) == 5


def _history_fields(store: Store, rcpt: str, action: str = "DELETE") -> dict[str, object]:
    with store.transaction(read_only=True) as s:
        row = s.scalars(select(HistoryEntry).where(HistoryEntry.rcpt == rcpt,
                                                   HistoryEntry.action == action)).one()
        meta = metadata_of(s, [row.id], history=True).get(row.id, {})
        fields = {c.key: getattr(row, c.key) for c in HistoryEntry.__table__.columns if c.key != "id"}
    return {**fields, "metadata": meta}


def test_bulk_delete_writes_the_same_history_as_single_delete(store: Store, tmp_path: Path) -> None:
    """The set-based chunk delete and queue.store.delete leave identical history rows."""
    ids = seed(store)
    other = Store(f"sqlite:///{tmp_path / 'single.db'}")
    upgrade(other.engine)
    single_ids = seed(other)
    with other.transaction() as s:
        for rcpt in ("bob@dest.org", "frank@dest.org"):
            delete(s, single_ids[rcpt], now=NOW)
    assert act_on_matching(store, "to=bob@dest.org or to=frank@dest.org", "delete", now=NOW) == 2
    for rcpt in ("bob@dest.org", "frank@dest.org"):
        bulk, single = _history_fields(store, rcpt), _history_fields(other, rcpt)
        assert bulk.pop("queueid") == ids[rcpt] and single.pop("queueid") == single_ids[rcpt]
        assert bulk == single
        assert bulk["metadata"]  # metadata followed the entry into history
    other.dispose()


def test_set_based_actions_honour_metadata_filters(store: Store) -> None:
    seed(store)
    assert act_on_matching(store, "metadata.score=9", "hold", now=NOW) == 1
    assert act_on_matching(store, "not metadata.score~%", "hold", now=NOW) == 2
    assert rcpts(store, "queue=HOLD") == ["dave@other.net", "frank@dest.org", "x@[192.0.2.9]"]
    assert act_on_matching(store, "metadata.Tag=Blue", "delete", now=NOW) == 2
    assert rcpts(store, "metadata.Tag~%") == ["frank@dest.org"]


def _three_recipient_message(store: Store, spool: Spool) -> list[int]:
    msgid = str(uuid.uuid4())
    body = b"From: amy@sender.test\r\nSubject: Party\r\nMessage-ID: <p1@sender.test>\r\n\r\nhi\r\n"
    path = spool.write(msgid, body)
    with store.transaction() as s:
        return enqueue(s, NewMessage(
            msgid=msgid, envelope=Envelope(sender="amy@sender.test", listener="inbound",
                                           recipients=("a@three.test", "b@three.test", "c@three.test")),
            path=path, size=len(body), subject="Party", received=NOW, transport="mx",
            metadata={"k": "v"}), now=NOW)


def _bounce_many(spool: Spool, calls: list[int] | None = None):  # type: ignore[no-untyped-def]
    def bounce_many(session: Session, entries: list[QueueEntry]) -> list[str]:
        if calls is not None:
            calls.append(len(entries))
        return bounce_all(session, entries, reason="550 5.7.1 bulk bounce by admin", now=NOW + 1)
    return bounce_many


def test_bulk_bounce_sends_one_dsn_per_message_listing_every_recipient(store: Store, spool: Spool) -> None:
    seed(store)
    ids = _three_recipient_message(store, spool)
    calls: list[int] = []
    orphans: list[str] = []
    n = act_on_matching(store, "to~%@three.test", "bounce", now=NOW + 1,
                        bounce_many=_bounce_many(spool, calls), on_paths=orphans.extend)
    assert n == 3 and calls == [3]  # one call for the chunk
    # Committed: the history and one notice, which keeps the body for the DSN to quote.
    assert (orphans, pending(store), rcpts(store, 'from=""')) == ([], 1, ["dave@other.net"])
    assert len(rcpts(store, "action=BOUNCE", history=True)) == 3
    queued, orphans = write_dsns(store, spool, now=NOW + 2, hostname="node.test")
    assert (queued, pending(store)) == (1, 0)
    with store.transaction(read_only=True) as s:
        [dsn] = s.scalars(select(QueueEntry).where(QueueEntry.rcpt == "amy@sender.test")).all()
        bounced = s.scalars(select(HistoryEntry).where(HistoryEntry.action == "BOUNCE")).all()
    assert (dsn.sender, dsn.is_dsn) == ("", 1)
    assert sorted(h.queueid for h in bounced) == ids
    assert {h.error for h in bounced} == {"550 5.7.1 bulk bounce by admin"}
    report = email.message_from_bytes(spool.read(dsn.path)).get_payload()[1].get_payload()
    assert [(b["Final-Recipient"], b["Status"]) for b in report[1:]] == [
        ("rfc822; a@three.test", "5.7.1"), ("rfc822; b@three.test", "5.7.1"),
        ("rfc822; c@three.test", "5.7.1")]
    assert len(orphans) == 1 and orphans[0].endswith(".eml")  # the message body, once
    assert len(rcpts(store)) == 6  # the five seeded entries and the DSN


def test_bulk_bounce_hook_failure_rolls_the_chunk_back(store: Store, spool: Spool) -> None:
    seed(store)
    _three_recipient_message(store, spool)
    calls: list[int] = []
    inner = _bounce_many(spool)

    def flaky(session: Session, entries: list[QueueEntry]) -> list[str]:
        calls.append(len(entries))
        inner(session, entries)
        if len(calls) == 2:
            raise OSError("disk full")
        return []

    with pytest.raises(OSError) as e:
        act_on_matching(store, "to~%@three.test", "bounce", now=NOW + 1, chunk=2, bounce_many=flaky)
    assert e.value.bulk_done == 2 and calls == [2, 1]  # type: ignore[attr-defined]
    # The first chunk (two recipients, one DSN) is committed; the second is untouched.
    assert rcpts(store, "to~%@three.test") == ["c@three.test"]
    assert len(rcpts(store, "action=BOUNCE", history=True)) == 2
    assert write_dsns(store, spool, now=NOW + 2, hostname="node.test")[0] == 1
    assert sorted(r.lower() for r in rcpts(store, 'from=""')) == ["amy@sender.test", "dave@other.net"]


def test_bulk_bounce_writes_the_same_history_as_single_bounce(store: Store, spool: Spool, tmp_path: Path) -> None:
    """bounce_all's set-based history rows equal bounce_entry's ORM ones (error = the reason)."""
    ids = seed(store)
    other = Store(f"sqlite:///{tmp_path / 'single.db'}")
    upgrade(other.engine)
    single_ids = seed(other)
    other_spool = Spool(tmp_path / "other-spool")
    with other.transaction() as s:
        for rcpt in ("bob@dest.org", "frank@dest.org"):
            entry = s.get(QueueEntry, single_ids[rcpt])
            bounce_entry(s, other_spool, entry, reason="550 5.7.1 bulk bounce by admin", now=NOW + 1,
                         hostname="node.test")
    assert act_on_matching(store, "to=bob@dest.org or to=frank@dest.org", "bounce", now=NOW + 1,
                           bounce_many=_bounce_many(spool)) == 2
    for rcpt in ("bob@dest.org", "frank@dest.org"):
        bulk, single = _history_fields(store, rcpt, "BOUNCE"), _history_fields(other, rcpt, "BOUNCE")
        assert bulk.pop("queueid") == ids[rcpt] and single.pop("queueid") == single_ids[rcpt]
        assert bulk == single
        assert bulk["error"] == "550 5.7.1 bulk bounce by admin"
    other.dispose()
