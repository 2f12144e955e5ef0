"""Every SPF result (RFC 7208 §2.6) from fixture DNS, and the limits of §4.6.4."""

from __future__ import annotations

import pytest

from appliance.mailauth.dns import Budget
from appliance.mailauth.spf import check_spf
from tests.support.dnszone import Zone, ZoneLookup

IP = "192.0.2.10"


@pytest.mark.parametrize("record, expected", [
    ("v=spf1 ip4:192.0.2.0/24 -all", "pass"),
    ("v=spf1 ip4:198.51.100.1 -all", "fail"),
    ("v=spf1 ip4:198.51.100.1 ~all", "softfail"),
    ("v=spf1 ?all", "neutral"),
    ("v=spf1 ip4:192.0.2.0/24 moo -all", "permerror"),
    ("v=spf1 a mx -all", "fail"),
])
def test_each_result_from_the_record(zone: Zone, budget: Budget, record: str, expected: str) -> None:
    zone.txt("example.com", record, "google-site-verification=x")
    zone.add("example.com", "A", "198.51.100.7")
    result = check_spf(budget, client_ip=IP, sender="alice@example.com", helo="mx.example.com")
    assert (result.result, result.domain, result.scope) == (expected, "example.com", "mfrom")


def test_none_without_a_record(zone: Zone, budget: Budget) -> None:
    zone.txt("example.com", "some other text")
    assert check_spf(budget, client_ip=IP, sender="a@example.com", helo="h").result == "none"
    assert check_spf(budget, client_ip=IP, sender="a@nowhere.example", helo="h").result == "none"


def test_temperror_on_a_dns_timeout(zone: Zone, budget: Budget) -> None:
    zone.timeouts.add("example.com")
    result = check_spf(budget, client_ip=IP, sender="a@example.com", helo="h")
    assert result.result == "temperror"


def test_temperror_when_the_budget_is_spent(zone: Zone) -> None:
    zone.txt("example.com", "v=spf1 include:a.example.net -all")
    now = [0.0]
    budget = Budget(ZoneLookup(zone), seconds=1.0, per_lookup=1.0, clock=lambda: now[0])
    now[0] = 5.0  # every lookup after this finds the budget spent
    assert check_spf(budget, client_ip=IP, sender="a@example.com", helo="h").result == "temperror"


def test_include_and_mx_pass(zone: Zone, budget: Budget) -> None:
    zone.txt("example.com", "v=spf1 include:_spf.example.net -all")
    zone.txt("_spf.example.net", "v=spf1 mx:example.net -all")
    zone.add("example.net", "MX", (10, "mx1.example.net"))
    zone.add("mx1.example.net", "A", IP)
    assert check_spf(budget, client_ip=IP, sender="a@example.com", helo="h").result == "pass"


def test_a_looping_include_chain_is_a_permerror(zone: Zone, budget: Budget) -> None:
    zone.txt("example.com", "v=spf1 include:loop.example.net -all")
    zone.txt("loop.example.net", "v=spf1 include:example.com -all")
    result = check_spf(budget, client_ip=IP, sender="a@example.com", helo="h")
    assert result.result == "permerror"
    assert len(zone.queries) <= 12  # the 10-lookup limit stopped it


def test_too_many_lookups_is_a_permerror(zone: Zone, budget: Budget) -> None:
    mechanisms = " ".join(f"a:h{i}.example.com" for i in range(12))
    zone.txt("example.com", f"v=spf1 {mechanisms} -all")
    for i in range(12):
        zone.add(f"h{i}.example.com", "A", "198.51.100.1")
    result = check_spf(budget, client_ip=IP, sender="a@example.com", helo="h")
    assert result.result == "permerror"
    assert "10" in result.reason or "lookup" in result.reason.lower()


def test_too_many_void_lookups_is_a_permerror(zone: Zone, budget: Budget) -> None:
    zone.txt("example.com", "v=spf1 a:v1.example.com a:v2.example.com a:v3.example.com -all")
    result = check_spf(budget, client_ip=IP, sender="a@example.com", helo="h")
    assert result.result == "permerror"


def test_null_sender_checks_helo(zone: Zone, budget: Budget) -> None:
    zone.txt("mx.example.org", "v=spf1 ip4:192.0.2.10 -all")
    result = check_spf(budget, client_ip=IP, sender="", helo="mx.example.org")
    assert (result.result, result.domain, result.scope) == ("pass", "mx.example.org", "helo")


def test_dnssec_is_recorded(zone: Zone, budget: Budget) -> None:
    zone.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    zone.secure.add("example.com")
    assert check_spf(budget, client_ip=IP, sender="a@example.com", helo="h").dnssec is True
    zone.txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all")
    assert check_spf(budget, client_ip=IP, sender="a@example.org", helo="h").dnssec is False
