"""The login throttle in the store: per (address, user), per address, shared between stores
on one database (as between a node's processes), failures audited."""

from __future__ import annotations

from appliance.access import audit, throttle
from appliance.access.throttle import ThrottlePolicy
from appliance.db.engine import Store

POLICY = ThrottlePolicy(per_user=3, per_address=5, window=60, block=30)


def fail(store: Store, user: str, *, address: str = "192.0.2.1", now: float = 1000.0) -> float:
    with store.transaction() as s:
        return throttle.record_failure(s, address=address, user=user, protocol="smtp",
                                       policy=POLICY, now=now)


def blocked(store: Store, user: str, *, address: str = "192.0.2.1", now: float = 1001.0) -> float:
    with store.transaction(read_only=True) as s:
        return throttle.blocked_for(s, address=address, user=user, now=now)


def test_one_user_blocked_leaves_the_others_and_other_addresses(store: Store) -> None:
    assert [fail(store, "alice") for _ in range(3)] == [0.0, 0.0, 30.0]
    assert blocked(store, "alice") == 29.0
    assert blocked(store, "bob") == 0.0
    assert blocked(store, "alice", address="192.0.2.2") == 0.0
    assert blocked(store, "alice", now=1031.0) == 0.0  # the block ends


def test_another_accounts_success_does_not_reset_the_count(store: Store) -> None:
    fail(store, "alice")
    fail(store, "alice")
    with store.transaction() as s:
        throttle.record_success(s, address="192.0.2.1", user="bob")
    assert fail(store, "alice") == 30.0
    with store.transaction() as s:  # alice's own success would have cleared hers
        throttle.record_success(s, address="192.0.2.1", user="alice")
        assert not throttle.has_failures(s, address="192.0.2.1", user="alice")


def test_cycling_user_names_hits_the_address_limit(store: Store) -> None:
    results = [fail(store, f"user{i}") for i in range(5)]
    assert results[-1] == 30.0 and not any(results[:-1])
    assert blocked(store, "anyone-else") == 29.0


def test_two_stores_on_one_database_share_the_counters(store: Store, store_url: str) -> None:
    other = Store(store_url)  # what a second process of the node opens
    try:
        fail(store, "alice")
        fail(other, "alice")
        fail(store, "alice")
        assert blocked(other, "alice") > 0
    finally:
        other.dispose()


def test_failures_are_audited_and_old_rows_expire(store: Store) -> None:
    for _ in range(3):
        fail(store, "alice")
    fail(store, "carol", now=5000.0)  # long after: alice's rows are swept
    with store.transaction(read_only=True) as s:
        rows = [r for r in audit.recent(s) if r.operation == "login"]
        assert not throttle.has_failures(s, address="192.0.2.1", user="alice")
    assert [r.username for r in rows] == ["carol", "alice", "alice", "alice"]
    assert rows[1].outcome.endswith("refused for 30 s") and '"smtp"' in rows[1].arguments
