"""The login throttle's pure core: fixed windows, a block at the limit, keys."""

from __future__ import annotations

from appliance.access.throttle import Count, address_key, after_failure, user_key


def test_failures_count_within_the_window_and_block_at_the_limit() -> None:
    count = None
    for second in range(4):
        count = after_failure(count, now=100.0 + second, limit=5, window=60, block=30)
        assert count.blocked_until == 0.0
    assert count == Count(4, 100.0, 0.0)
    blocked = after_failure(count, now=104.0, limit=5, window=60, block=30)
    assert blocked.blocked_until == 134.0 and blocked.failures == 0


def test_an_old_window_starts_again() -> None:
    count = Count(4, 100.0, 0.0)
    fresh = after_failure(count, now=161.0, limit=5, window=60, block=30)
    assert fresh == Count(1, 161.0, 0.0)


def test_keys_separate_users_and_addresses() -> None:
    assert user_key("192.0.2.1", "alice") != user_key("192.0.2.1", "bob")
    assert address_key("192.0.2.1") != user_key("192.0.2.1", "")
    assert len(user_key("1" * 500, "x")) <= 300
