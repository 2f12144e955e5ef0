"""Queue and history search, count and group-by on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from appliance.db.engine import Store
from appliance.errors import FilterError, InvalidInput
from appliance.hql import compile_filter, restrict
from appliance.queue.query import GroupRow, age_bucket, count, group_by, search
from tests.integration.hql.seeding import NOW, seed


def test_search_newest_first_with_total(store: Store) -> None:
    ids = seed(store)
    with store.transaction(read_only=True) as s:
        rows, total = search(s, "", offset=0, limit=10, with_total=True)
    assert total == 5
    # a (60 s old, two entries: higher id first), d (600 s), b (3600 s), c (a day).
    assert [r.rcpt for r in rows] == ["Carol@Dest.ORG", "bob@dest.org", "x@[192.0.2.9]",
                                      "dave@other.net", "frank@dest.org"]
    assert rows[0].id == ids["Carol@Dest.ORG"]


def test_search_pages(store: Store) -> None:
    seed(store)
    with store.transaction(read_only=True) as s:
        first, none = search(s, "", offset=0, limit=2)
        second, _ = search(s, compile_filter(""), offset=2, limit=2)
        last, total = search(s, "", offset=4, limit=2, with_total=True)
        empty, _ = search(s, "", offset=0, limit=0)
    assert none is None and empty == []
    assert [r.rcpt for r in first + second + last] == [
        "Carol@Dest.ORG", "bob@dest.org", "x@[192.0.2.9]", "dave@other.net", "frank@dest.org"]
    assert total == 5


def test_search_with_filter_and_restriction(store: Store) -> None:
    seed(store)
    with store.transaction(read_only=True) as s:
        rows, total = search(s, restrict("to~%@dest.org", "transport=mx"), offset=0, limit=100, with_total=True)
        other, n = search(s, restrict("to~%@dest.org", "to~%@other.net"), offset=0, limit=100, with_total=True)
    assert {r.rcpt for r in rows} == {"bob@dest.org", "Carol@Dest.ORG", "frank@dest.org"} and total == 3
    assert other == [] and n == 0


def test_history_search(store: Store) -> None:
    seed(store)
    with store.transaction(read_only=True) as s:
        rows, total = search(s, "", offset=0, limit=100, history=True, with_total=True)
        delivered = count(s, compile_filter("action=DELIVER", history=True), history=True)
    assert total == 3 and delivered == 1
    assert [r.action for r in rows] == ["DELIVER", "DEFER", "DELETE"]  # newest ts0 first, then id desc
    with pytest.raises(FilterError):
        count(s, "queue=HOLD", history=True)


@pytest.mark.parametrize(
    ("offset", "limit"), [(-1, 10), (0, -1), (0, 10001), ("0", 10), (0, 1.5), (True, 1)]
)
def test_search_validates_paging(store: Store, offset: object, limit: object) -> None:
    with store.transaction(read_only=True) as s, pytest.raises(InvalidInput):
        search(s, "", offset=offset, limit=limit)  # type: ignore[arg-type]


def test_search_limit_at_maximum(store: Store) -> None:
    seed(store)
    with store.transaction(read_only=True) as s:
        rows, _ = search(s, "", offset=0, limit=10000)
    assert len(rows) == 5


def test_count(store: Store) -> None:
    seed(store)
    with store.transaction(read_only=True) as s:
        assert count(s, "") == 5
        assert count(s, None) == 5
        assert count(s, "from~%@example.com") == 3
        assert count(s, "metadata.score~%") == 3


def test_group_by_domain_with_age_buckets(store: Store) -> None:
    seed(store)
    with store.transaction(read_only=True) as s:
        rows = group_by(s, "", "to-domain", now=NOW)
    buckets = [0] * 10
    buckets[age_bucket(60)] = 2
    buckets[age_bucket(86400)] = 1
    assert rows[0] == GroupRow("dest.org", 3, buckets)
    assert {r.key for r in rows} == {"dest.org", "other.net", "192.0.2.9"}
    other = next(r for r in rows if r.key == "other.net")
    assert other.buckets[age_bucket(3600)] == 1 and other.count == 1


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("from-domain", {"example.com": 3, "": 1, "evil.example": 1}),
        ("transport", {"mx": 3, "relay": 1, "local": 1}),
        ("queue", {"ACTIVE": 3, "DEFER": 1, "HOLD": 1}),
        ("error", {"": 4, "451 4.7.1 greylisted": 1}),
        ("server", {"inbound": 4, "outbound": 1}),
        ("sasl", {"alice": 2, "": 3}),
    ],
)
def test_group_by_fields(store: Store, field: str, expected: dict[str, int]) -> None:
    seed(store)
    with store.transaction(read_only=True) as s:
        rows = group_by(s, "", field, now=NOW)
    assert {r.key: r.count for r in rows} == expected
    assert all(sum(r.buckets) == r.count for r in rows)
    assert [r.count for r in rows] == sorted((r.count for r in rows), reverse=True)


def test_group_by_with_filter_and_bad_field(store: Store) -> None:
    seed(store)
    with store.transaction(read_only=True) as s:
        rows = group_by(s, "transport=mx", "queue", now=NOW)
        assert {r.key: r.count for r in rows} == {"ACTIVE": 2, "HOLD": 1}
        with pytest.raises(InvalidInput, match="cannot group by 'rcpt'"):
            group_by(s, "", "rcpt", now=NOW)


def test_group_by_buckets_match_pure_function(store: Store) -> None:
    """The SQL CASE and age_bucket() agree on every boundary's both sides."""
    seed(store)
    with store.transaction(read_only=True) as s:
        for minutes in (5, 10, 20, 40, 80, 160, 320, 640, 1280):
            for delta in (-1.0, 1.0):
                now = NOW - 60 + minutes * 60 + delta
                age = now - (NOW - 60)
                rows = group_by(s, "transport=mx to~%@dest.org queue=ACTIVE", "to-domain", now=now)
                assert rows[0].buckets[age_bucket(age)] == 2, (minutes, delta)
