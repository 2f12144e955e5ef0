"""The subject text index gives exactly LIKE's answers and follows every change to the queue."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select, text, update

from appliance.db.engine import Store
from appliance.db.schema import downgrade, upgrade
from appliance.db.models import QueueEntry
from appliance.hql import compile_filter
from appliance.hql.compiler import _like, fts_query
from appliance.queue import store as qs
from appliance.queue.bulk import act_on_matching
from appliance.types import Action, Envelope, NewMessage

NOW = 1_700_000_000.0
SUBJECTS = [
    "Invoice 50_off", 'Re: [ticket #123] "quoted" reply', "ÉCOLE école Straße", "naïve café",
    "100% sure", "back\\slash", "", "abcABCabc", "MiXeD CaSe HeLLo", "hello", "hel lo",
    "Ünïcödé ÜNÏCÖDÉ", "x" * 300 + "needle", "tab\there",
]
PATTERNS = [
    "hello", "HELLO", "hel", "he", "lo", "50_off", "50_", "_off", "%50%off%", "50%off", "invoice%",
    "%reply", '"quoted"', "#123]", "école", "ÉCOLE", "Straße", "STRASSE", "café", "CAFÉ", "ünïcödé",
    "100%", "%sure", "\\sla", "abcabc", "bcAB", "needle", "x%needle", "%", "%%", "xxxxxxxxxxxxxx",
    "tab\th", "nosuchword", "e%o", "ab",
]


def _enqueue(store: Store, subjects: list[str]) -> dict[str, int]:
    ids = {}
    with store.transaction() as session:
        for i, subject in enumerate(subjects):
            msg = NewMessage(msgid=str(uuid.uuid4()), envelope=Envelope(
                sender="a@example.com", recipients=(f"r{i}@dest.example",), listener="in",
                client_ip="192.0.2.1", helo="h"), path=f"p{i}", size=1, subject=subject,
                received=NOW + i)
            ids[subject] = qs.enqueue(session, msg, now=NOW)[0]
    return ids


def _found(store: Store, hql: str) -> set[int]:
    with store.transaction(read_only=True) as session:
        return set(session.scalars(select(QueueEntry.id).where(compile_filter(hql))))


def _by_like(store: Store, value: str) -> set[int]:
    """What `subject~value` matched before the text index: LIKE over every row."""
    with store.transaction(read_only=True) as session:
        return set(session.scalars(select(QueueEntry.id).where(_like(QueueEntry.subject, value))))


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_same_answers_as_like(store: Store) -> None:
    _enqueue(store, SUBJECTS)
    for value in PATTERNS:
        hql = f"subject~{_quoted(value)}"
        assert _found(store, hql) == _by_like(store, value), value
        assert _found(store, f"not {hql}") == _by_like(store, "%") - _by_like(store, value), value
    # Spot checks of the meaning (ASCII case folding is common to both stores).
    assert len(_found(store, "subject~HELLO")) == 2
    assert _found(store, "subject~50%off") == set()  # '%' anchors both ends


def _index_count(store: Store, value: str) -> int:
    """Entries the store's text index itself finds for `value` (not LIKE's re-check)."""
    with store.engine.connect() as conn:
        if store.is_sqlite:
            return int(conn.execute(text(
                "SELECT count(*) FROM queue_subject_fts WHERE queue_subject_fts MATCH :q"),
                {"q": fts_query(value)}).scalar_one())
        conn.execute(text("SET enable_seqscan = off"))
        return int(conn.execute(text("SELECT count(*) FROM queue WHERE subject ILIKE :p"),
                                {"p": f"%{value}%"}).scalar_one())


def test_index_follows_insert_update_delete_and_bulk(store: Store) -> None:
    ids = _enqueue(store, ["alpha one", "alpha two", "beta three", "gamma four"])
    assert _index_count(store, "alpha") == 2 and _found(store, "subject~alpha") == {
        ids["alpha one"], ids["alpha two"]}
    with store.transaction() as session:
        session.execute(update(QueueEntry).where(QueueEntry.id == ids["alpha two"])
                        .values(subject="delta two"))
    assert _index_count(store, "alpha") == 1 and _index_count(store, "delta") == 1
    assert _found(store, "subject~delta") == {ids["alpha two"]}
    with store.transaction() as session:
        entry = session.get(QueueEntry, ids["beta three"])
        assert entry is not None
        qs.finish(session, entry, Action.DELETE, now=NOW)
    assert _index_count(store, "beta") == 0 and _found(store, "subject~beta") == set()
    assert act_on_matching(store, "subject~gamma", "delete", now=NOW) == 1
    assert _index_count(store, "gamma") == 0
    with store.transaction() as session:
        session.execute(delete(QueueEntry))
    assert _index_count(store, "alpha") == 0 and _index_count(store, "delta") == 0


def test_index_is_built_by_the_migration(store: Store) -> None:
    """Entries queued before the index existed are found after the upgrade (backfill)."""
    n = 3
    downgrade(store.engine, "0006")
    with store.engine.begin() as conn:
        for i in range(n):
            conn.execute(text(
                "INSERT INTO queue (msgid, ts0, ts, sender, sender_domain, rcpt, rcpt_domain, "
                "subject, size, listener, transport, fromserver, helo, sasl, action, quarantine, "
                "description, error, retries, path, actionid, jobid, score, is_dsn, state, "
                "next_retry, lease_until, lease_owner) VALUES (:m, 1, 1, '', '', 'r', 'd', :s, "
                "0, '', '', '', '', '', '', '', '', '', 0, '', 0, '', 0, 0, 'ACTIVE', 0, 0, '')"),
                {"m": str(uuid.uuid4()), "s": f"old subject {i}"})
    upgrade(store.engine)
    assert _index_count(store, "old subject") == n
    assert len(_found(store, "subject~OLD%subject%")) == n
