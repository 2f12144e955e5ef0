"""Grouping claimed entries per destination and into SMTP transactions."""

from __future__ import annotations

import dataclasses

from appliance.delivery.grouping import Destination, destination_for, group_by_destination, transactions


@dataclasses.dataclass
class E:
    msgid: str
    rcpt: str
    sender: str = "s@x.test"
    path: str = ""
    transport: str = "default"

    def __post_init__(self) -> None:
        self.path = self.path or f"{self.msgid}.eml"


def _route(nexthop: str = ""):
    return lambda e: destination_for(transport=e.transport, nexthop=nexthop,
                                     rcpt_domain=e.rcpt.rpartition("@")[2])


def test_static_nexthop_puts_every_domain_on_one_destination() -> None:
    entries = [E("m1", "a@one.test"), E("m2", "b@two.test"), E("m3", "c@one.test", transport="out")]
    groups = group_by_destination(entries, _route("10.0.0.1:25"))
    assert groups == {
        Destination("default", nexthop="10.0.0.1:25"): entries[:2],
        Destination("out", nexthop="10.0.0.1:25"): entries[2:],
    }


def test_mx_routing_groups_per_domain_case_insensitively() -> None:
    entries = [E("m1", "a@One.test"), E("m2", "b@two.test"), E("m3", "c@one.TEST")]
    groups = group_by_destination(entries, _route())
    assert list(groups) == [Destination("default", domain="one.test"), Destination("default", domain="two.test")]
    assert groups[Destination("default", domain="one.test")] == [entries[0], entries[2]]
    assert str(Destination("default", domain="one.test")) == "default:one.test"


def test_recipients_of_one_message_share_a_transaction() -> None:
    entries = [E("m1", "a@x.test"), E("m2", "b@x.test"), E("m1", "c@x.test"), E("m1", "d@x.test", sender="")]
    txs = transactions(entries)
    assert [(t.msgid, t.sender, [e.rcpt for e in t.entries]) for t in txs] == [
        ("m1", "s@x.test", ["a@x.test", "c@x.test"]),
        ("m2", "s@x.test", ["b@x.test"]),
        ("m1", "", ["d@x.test"]),
    ]


def test_transactions_are_capped_and_never_repeat_a_recipient() -> None:
    entries = [E("m1", f"r{i}@x.test") for i in range(5)] + [E("m1", "R0@x.test")]
    txs = transactions(entries, max_rcpts=2)
    assert [[e.rcpt for e in t.entries] for t in txs] == [
        ["r0@x.test", "r1@x.test"], ["r2@x.test", "r3@x.test"], ["r4@x.test", "R0@x.test"],
    ]
    dup = transactions([E("m1", "a@x.test"), E("m1", "A@x.test")])
    assert len(dup) == 2
