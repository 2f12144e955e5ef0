"""Revisions on SQLite and PostgreSQL: commit, log, diff, revert exactness, refusal, seeding."""

from __future__ import annotations

import itertools

import pytest

from appliance.config import revisions
from appliance.config.defaults import DEFAULT_TEXT
from appliance.config.document import ConfigError
from appliance.db.engine import Store
from appliance.errors import NotFound

V2 = DEFAULT_TEXT.replace("workers = 4", "workers = 8  # busier")


def _clock() -> object:
    ticks = itertools.count(1000)
    return lambda: float(next(ticks))


def test_commit_log_diff_and_revert(store: Store) -> None:
    clock = _clock()
    with store.transaction() as s:
        r1 = revisions.text_set(s, text=DEFAULT_TEXT, comment="first", author="alice", clock=clock)
        r2 = revisions.text_set(s, text=V2, comment="more workers", author="bob", clock=clock)
    with store.transaction(read_only=True) as s:
        assert revisions.text_get(s) == V2
        assert revisions.text_get(s, revision=r1) == DEFAULT_TEXT
        log = revisions.revision_log(s, offset=0, limit=10)
        assert [(e.id, e.author, e.comment) for e in log] == [(r2, "bob", "more workers"),
                                                               (r1, "alice", "first")]
        assert log[0].ts > log[1].ts
        assert [e.id for e in revisions.revision_log(s, offset=1, limit=1)] == [r1]
        diff = revisions.revision_diff(s, from_=r1, to=r2)
    assert diff.startswith(f"--- revision {r1}\n+++ revision {r2}\n")
    assert "-workers = 4\n+workers = 8  # busier\n" in diff
    with store.transaction() as s:
        r3 = revisions.revision_revert(s, revision=r1, comment="", author="carol", clock=clock)
    with store.transaction(read_only=True) as s:
        assert r3 > r2
        assert revisions.text_get(s, revision=r3) == DEFAULT_TEXT  # byte for byte
        assert revisions.revision_diff(s, from_=r1, to=r3) == ""
        assert revisions.revision_log(s, limit=1)[0].comment == f"revert to revision {r1}"


def test_invalid_text_changes_nothing(store: Store) -> None:
    with store.transaction() as s:
        revisions.text_set(s, text=DEFAULT_TEXT, author="a")
    with pytest.raises(ConfigError) as info:
        with store.transaction() as s:
            revisions.text_set(s, text="[queue]\nworkers = -1\n", author="a")
    assert info.value.problems[0].line == 2
    with pytest.raises(ConfigError):
        with store.transaction() as s:
            revisions.key_set(s, key="queue.workers", value="0", author="a")
    with store.transaction(read_only=True) as s:
        assert revisions.current_revision(s) == 1
        assert revisions.text_get(s) == DEFAULT_TEXT


def test_unknown_revision_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        with store.transaction(read_only=True) as s:
            revisions.text_get(s)
    with store.transaction() as s:
        revisions.text_set(s, text=DEFAULT_TEXT, author="a")
    with pytest.raises(NotFound):
        with store.transaction() as s:
            revisions.revision_revert(s, revision=99, author="a")


def test_seed_rule(store: Store) -> None:
    with store.transaction() as s:
        assert revisions.seed(s, file_text=None) == 1  # defaults
        assert revisions.text_get(s) == DEFAULT_TEXT
        assert revisions.seed(s, file_text=V2) == 2  # a --config file appears
        revisions.key_set(s, key="queue.workers", value="16", author="api")  # revision 3
        assert revisions.seed(s, file_text=V2) == 3  # same file again: API change is kept
        changed = V2.replace("busier", "busier still")
        assert revisions.seed(s, file_text=changed) == 4  # a changed file is a new revision
        assert revisions.text_get(s) == changed
        assert revisions.revision_log(s, limit=1)[0].comment == "from the --config file"
