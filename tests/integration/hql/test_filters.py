"""Every HQL field and operator against real rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, QueueEntry
from appliance.errors import FilterError
from appliance.hql import compile_filter, restrict
from tests.integration.hql.seeding import MSGIDS, seed

ALL = {"bob@dest.org", "Carol@Dest.ORG", "dave@other.net", "frank@dest.org", "x@[192.0.2.9]"}


def matching(store: Store, text: str, *, history: bool = False) -> set[str]:
    model = HistoryEntry if history else QueueEntry
    with store.transaction(read_only=True) as s:
        return set(s.scalars(select(model.rcpt).where(compile_filter(text, history=history))))


def queue_cases(ids: dict[str, int]) -> list[tuple[str, set[str]]]:
    a, c = MSGIDS["a"], MSGIDS["c"]
    return [
        ("", ALL),
        (f"messageid={a}", {"bob@dest.org", "Carol@Dest.ORG"}),
        (f"messageid={a}:{ids['Carol@Dest.ORG']}", {"Carol@Dest.ORG"}),
        (f"messageid={a}:{ids['frank@dest.org']}", set()),
        (f"messageid~{c[-8:]}", {"frank@dest.org"}),
        (f"queueid={ids['dave@other.net']}", {"dave@other.net"}),
        (f"queueid>{ids['dave@other.net']}", {"frank@dest.org", "x@[192.0.2.9]"}),
        ("actionid=7", {"dave@other.net"}),
        ("jobid=job-1", {"dave@other.net"}),
        ("queue=HOLD", {"frank@dest.org"}),
        ("queue=defer", {"dave@other.net"}),
        ("queue=ACTIVE", {"bob@dest.org", "Carol@Dest.ORG", "x@[192.0.2.9]"}),
        ("action=QUARANTINE", {"frank@dest.org"}),
        ("quarantine=spam", {"frank@dest.org"}),
        ("server=outbound", {"dave@other.net"}),
        ("transport=mx", {"bob@dest.org", "Carol@Dest.ORG", "frank@dest.org"}),
        ("from=alice@example.com", {"bob@dest.org", "Carol@Dest.ORG"}),
        ("from=ALICE@EXAMPLE.COM", {"bob@dest.org", "Carol@Dest.ORG"}),
        ('from=""', {"dave@other.net"}),
        ("from~%@example.com", {"bob@dest.org", "Carol@Dest.ORG", "frank@dest.org"}),
        ("from~@EXAMPLE.com", {"bob@dest.org", "Carol@Dest.ORG", "frank@dest.org"}),
        ("from~alice", {"bob@dest.org", "Carol@Dest.ORG"}),
        ("from~AL%", {"bob@dest.org", "Carol@Dest.ORG"}),
        ("to=carol@dest.org", {"Carol@Dest.ORG"}),
        ("to~%@dest.org", {"bob@dest.org", "Carol@Dest.ORG", "frank@dest.org"}),
        ("to~%@[192.0.2.9]", {"x@[192.0.2.9]"}),
        ("to~dest.org", {"bob@dest.org", "Carol@Dest.ORG", "frank@dest.org"}),
        ("ip=198.51.100.7", {"dave@other.net"}),
        ("ip~198.51", {"dave@other.net"}),
        ("helo=EVIL", {"x@[192.0.2.9]"}),
        ("helo~evil", {"x@[192.0.2.9]"}),
        ("sasl=alice", {"bob@dest.org", "Carol@Dest.ORG"}),
        ("subject~invoice", {"bob@dest.org", "Carol@Dest.ORG"}),
        ("subject~50_", {"bob@dest.org", "Carol@Dest.ORG"}),  # '_' is literal, not any-char
        ("subject~%50%off%", {"bob@dest.org", "Carol@Dest.ORG", "frank@dest.org"}),  # '%' is a wildcard
        ("subject~50%sale", set()),  # with '%' the pattern is anchored at both ends
        ("subject~50%sale%", {"frank@dest.org"}),
        ('subject~"\\"sale\\""', {"frank@dest.org"}),
        ('subject="Invoice 50_off"', {"bob@dest.org", "Carol@Dest.ORG"}),
        ("error~greylisted", {"dave@other.net"}),
        (f"time>{1_700_000_000 - 700}", {"bob@dest.org", "Carol@Dest.ORG", "x@[192.0.2.9]"}),
        (f"time<={1_700_000_000 - 3600}", {"dave@other.net", "frank@dest.org"}),
        ("size>=2000", {"dave@other.net", "frank@dest.org"}),
        ("size<1000", {"x@[192.0.2.9]"}),
        ("retries=3", {"dave@other.net"}),
        ("metadata.score=5", {"bob@dest.org", "Carol@Dest.ORG"}),
        ("metadata.Tag~x_", {"frank@dest.org"}),
        ("metadata.Tag~blue", {"bob@dest.org", "Carol@Dest.ORG"}),
        ("metadata.tag=Blue", set()),  # keys are exact
        ("not metadata.score=5", {"dave@other.net", "frank@dest.org", "x@[192.0.2.9]"}),
        ("to~%@dest.org not queue=HOLD", {"bob@dest.org", "Carol@Dest.ORG"}),
        ("transport=mx or transport=local size<1000", {"bob@dest.org", "Carol@Dest.ORG", "frank@dest.org", "x@[192.0.2.9]"}),
        ("transport=relay or transport=mx && size>1000", {"dave@other.net", "frank@dest.org"}),
        ("(transport=relay or transport=mx) not (size>1000 and queue=HOLD)", {"bob@dest.org", "Carol@Dest.ORG", "dave@other.net"}),
    ]


def test_queue_filters(store: Store) -> None:
    ids = seed(store)
    wrong = {}
    for text, expected in queue_cases(ids):
        got = matching(store, text)
        if got != expected:
            wrong[text] = (sorted(got), sorted(expected))
    assert wrong == {}


HISTORY_CASES = [
        ("action=DELIVER", {"bob@dest.org"}),
        ("action=delete", {"y@dest.org.evil"}),
        ("action~DE", {"bob@dest.org", "y@dest.org.evil"}),
        ("to~%@dest.org.evil", {"y@dest.org.evil"}),
        ("from=MALLORY@evil.example", {"y@dest.org.evil"}),
        ("metadata.score=5", {"bob@dest.org"}),
        ("error~busy", {"bob@dest.org"}),
]


def test_history_filters(store: Store) -> None:
    seed(store)
    for text, expected in HISTORY_CASES:
        assert matching(store, text, history=True) == expected, text


def test_history_ids(store: Store) -> None:
    ids = seed(store)
    with store.transaction(read_only=True) as s:
        rows = list(s.scalars(select(HistoryEntry).order_by(HistoryEntry.id)))
    first = rows[0]
    assert matching(store, f"historyid={first.id}", history=True) == {first.rcpt}
    bob = ids["bob@dest.org"]
    assert len([r for r in rows if r.queueid == bob]) == 2
    with store.transaction(read_only=True) as s:
        n = len(list(s.scalars(select(HistoryEntry.id).where(
            compile_filter(f"queueid={bob} messageid={MSGIDS['a']}:{bob}", history=True)))))
    assert n == 2
    with pytest.raises(FilterError):
        compile_filter("queue=HOLD", history=True)


def test_restriction_limits_every_filter(store: Store) -> None:
    seed(store)
    restriction = "to~%@dest.org"
    assert matching(store, restrict(restriction, "")) == {"bob@dest.org", "Carol@Dest.ORG", "frank@dest.org"}
    assert matching(store, restrict(restriction, "transport=relay or size>0")) == {
        "bob@dest.org", "Carol@Dest.ORG", "frank@dest.org"}
    assert matching(store, restrict(restriction, "to~%@other.net")) == set()


def test_hostile_values_are_only_data(store: Store) -> None:
    seed(store)
    for text in ['subject="x\' OR 1=1 --"', 'from="a\');DROP TABLE queue;--"', 'to="%\' OR \'1\'=\'1"']:
        assert matching(store, text) == set()
    assert len(matching(store, "")) == 5
