"""Cluster members and node overrides in a store (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from appliance.cluster import membership, registry
from appliance.cluster.dsn import redacted, to_url
from appliance.config import overrides, revisions
from appliance.config.defaults import DEFAULT_TEXT
from appliance.config.document import ConfigError
from appliance.db.engine import Store
from appliance.errors import InvalidInput, NotFound


def test_register_heartbeat_status_and_remove(store: Store) -> None:
    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731
    with store.transaction() as s:
        registry.register(s, serial="A", name="a", url="http://a/remote/", clock=clock)
        registry.register(s, serial="B", name="b", url="http://b/remote/", clock=clock)
    now[0] = 1020.0
    with store.transaction() as s:
        assert registry.heartbeat(s, serial="A", revision=3, problem="", clock=clock)
        nodes = registry.list_nodes(s, stale_after=15, clock=clock)
    assert [(n.serial, n.status, n.configrevision) for n in nodes] == [("A", "up", 3), ("B", "stale", 0)]
    with store.transaction() as s:
        registry.remove(s, serial="B")
        assert not registry.heartbeat(s, serial="B", revision=3, clock=clock)  # B learns it left
    with pytest.raises(NotFound):
        with store.transaction() as s:
            registry.remove(s, serial="B")


def test_overrides_are_per_node_and_validated(store: Store) -> None:
    with store.transaction() as s:
        revisions.text_set(s, text=DEFAULT_TEXT, author="a")
        overrides.override_set(s, serial="A", key="node.name", value="edge-a", base_text=DEFAULT_TEXT,
                               author="a")
    with pytest.raises(ConfigError):
        with store.transaction() as s:
            overrides.override_set(s, serial="A", key="queue.workers", value="0",
                                   base_text=DEFAULT_TEXT, author="a")
    with store.transaction(read_only=True) as s:
        assert overrides.overrides_of(s, "A") == [("node.name", "edge-a")]
        assert overrides.overrides_of(s, "B") == []
    effective = overrides.effective_text(DEFAULT_TEXT, [("node.name", "edge-a")])
    assert 'name = "edge-a"' in effective and "# appliance configuration" in effective


def test_membership_and_last_good_survive_in_the_local_store(store: Store) -> None:
    with store.transaction() as s:
        membership.set_membership(s, membership.Membership(dsn="postgresql://u:pw@h/db",
                                                           registered=True))
        membership.set_last_good(s, membership.LastGood(revision=4, text=DEFAULT_TEXT, source="x"))
    with store.transaction(read_only=True) as s:
        assert membership.membership(s) == membership.Membership("postgresql://u:pw@h/db", True)
        assert membership.last_good(s) == membership.LastGood(4, DEFAULT_TEXT, "x")
    with store.transaction() as s:
        membership.set_membership(s, None)
        assert membership.membership(s) is None


def test_dsn_forms() -> None:
    assert to_url("host=127.0.0.1 port=5 user=u password=p dbname=d") == "postgresql+psycopg://u:p@127.0.0.1:5/d"
    assert to_url("postgresql://u:p@h/d") == "postgresql+psycopg://u:p@h/d"
    assert "p@" not in redacted("postgresql://u:p@h/d")
    with pytest.raises(InvalidInput):
        to_url("sqlite:///x.db")
