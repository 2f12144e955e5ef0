"""Relay rules (pure), and how a config revision's flow applies them per listener."""

from __future__ import annotations

import pytest

from appliance.config.document import parse
from appliance.policy.flow import DefaultFlow, SessionInfo
from appliance.policy.functions import Functions
from appliance.policy.relay import RelayRules
from appliance.policy.router import FlowCache

RULES = RelayRules.of(networks=["192.0.2.0/24", "2001:db8::/32"], domains=["Local.Test", ".sub.test"])


@pytest.mark.parametrize("recipient,client_ip,authenticated,refusal", [
    ("r@local.test", "203.0.113.9", False, None),  # a local domain: anyone
    ("r@LOCAL.TEST.", "203.0.113.9", False, None),
    ("r@a.b.sub.test", "203.0.113.9", False, None),  # ".sub.test": its subdomains
    ("r@sub.test", "203.0.113.9", False, 554),  # ... not the parent itself
    ("r@local.test.example", "203.0.113.9", False, 554),
    ("r@example.org", "203.0.113.9", False, 554),
    ("r@example.org", "203.0.113.9", True, None),  # authenticated
    ("r@example.org", "192.0.2.77", False, None),  # mynetworks
    ("r@example.org", "::ffff:192.0.2.77", False, None),  # IPv4-mapped on a dual-stack socket
    ("r@example.org", "2001:db8::5", False, None),
    ("r@example.org", "127.0.0.1", False, 554),  # loopback is not in this list
    ("r@example.org", "", False, 554),
    ("r@[192.0.2.1]", "192.0.2.77", True, 550),  # literals: refused from everyone
    ("r@[IPv6:2001:db8::1]", "192.0.2.77", False, 550),
])
def test_relay_rules(recipient: str, client_ip: str, authenticated: bool, refusal: int | None) -> None:
    found = RULES.refusal(recipient, client_ip=client_ip, authenticated=authenticated)
    assert (found[0] if found else None) == refusal


def test_literals_when_configured_and_the_loopback_default() -> None:
    assert RelayRules.of(networks=[], domains=[], address_literals=True).refusal(
        "r@[192.0.2.1]", client_ip="203.0.113.9", authenticated=False) is None
    default = DefaultFlow()
    assert default.rcpt_to(SessionInfo(listener="in", client_ip="127.0.0.1"), "r@example.org").code == 0
    assert default.rcpt_to(SessionInfo(listener="in", client_ip="::1"), "r@example.org").code == 0
    refused = default.rcpt_to(SessionInfo(listener="in", client_ip="198.51.100.1"), "r@example.org")
    assert (refused.decision.value, refused.code, refused.text) == ("reject", 554, "5.7.1 Relay access denied")


CONFIG = """
[relay]
mynetworks = {networks}
domains = ["local.test"]

[scripts]
decides = "function rcpt_to(s, r) return accept() end"
silent = "function mail_from(s, f) return accept() end"

[[listeners]]
id = "plain"
port = 2525

[[listeners]]
id = "decides"
port = 2526
script = "decides"

[[listeners]]
id = "silent"
port = 2527
script = "silent"
"""


def test_each_revision_applies_its_relay_rules_unless_the_script_decides_rcpt() -> None:
    cache = FlowCache(Functions())
    flow = cache.build(parse(CONFIG.format(networks='["192.0.2.0/24"]')))

    def code(listener: str, recipient: str = "r@example.org", ip: str = "127.0.0.1") -> int:
        return flow.rcpt_to(SessionInfo(listener=listener, client_ip=ip), recipient).code

    assert code("plain") == 554 and code("silent") == 554  # no rcpt_to handler: the rules
    assert code("decides") == 0  # the script's rcpt_to handler decides
    assert code("plain", "r@local.test") == 0 and code("silent", "r@local.test") == 0
    assert code("plain", ip="192.0.2.1") == 0
    flow = cache.build(parse(CONFIG.format(networks='["127.0.0.0/8"]')))  # a new revision
    assert code("plain") == 0 and code("silent") == 0
    assert code("plain", ip="192.0.2.1") == 554


@pytest.mark.parametrize("section,problem", [
    ('mynetworks = ["10.0.0.0/33"]', "mynetworks entry '10.0.0.0/33'"),
    ('mynetworks = ["localhost"]', "mynetworks entry 'localhost'"),
    ('domains = ["exa mple.com"]', "relay domain 'exa mple.com'"),
])
def test_bad_relay_settings_are_refused_with_what_is_wrong(section: str, problem: str) -> None:
    from appliance.errors import InvalidInput

    with pytest.raises(InvalidInput, match=problem):
        parse(f"[relay]\n{section}\n")


def test_connect_marks_clients_in_mynetworks() -> None:
    flow = FlowCache(Functions()).build(parse(CONFIG.format(networks='["192.0.2.0/24"]')))
    for listener in ("plain", "decides", "silent"):
        inside = SessionInfo(listener=listener, client_ip="192.0.2.8")
        outside = SessionInfo(listener=listener, client_ip="127.0.0.1")
        flow.connect(inside), flow.connect(outside)
        assert (inside.mynetwork, outside.mynetwork) == (True, False)
    default = SessionInfo(listener="in", client_ip="::1")
    DefaultFlow().connect(default)
    assert default.mynetwork
