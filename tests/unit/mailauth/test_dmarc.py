"""DMARC outcomes (RFC 7489 §6.6) from fixture DNS, and the default policy at DATA."""

from __future__ import annotations

import pytest

from appliance.mailauth.check import Checker, default_decision
from appliance.mailauth.dmarc import OrgDomains, RecordError, parse_record
from tests.support.dkimkeys import message, rsa_key, sign, txt_chunks
from tests.support.dnszone import Zone, ZoneLookup
from tests.unit.mailauth.conftest import settings

IP = "192.0.2.10"
ORGS = OrgDomains()


def checker(zone: Zone, sample: float = 0.0) -> Checker:
    return Checker(ZoneLookup(zone), orgs=ORGS, sample=lambda: sample)


def run(zone: Zone, msg: bytes, *, sender: str = "bounce@example.com", sample: float = 0.0,
        **config: object):
    return checker(zone, sample).check(msg, client_ip=IP, sender=sender, helo="mx.example.com",
                                       settings=settings(**config))


@pytest.fixture
def domain(zone: Zone) -> Zone:
    zone.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    zone.txt("sel._domainkey.example.com", txt_chunks(rsa_key()[1]))  # type: ignore[arg-type]
    zone.txt("_dmarc.example.com", "v=DMARC1; p=reject; rua=mailto:dmarc@example.com")
    return zone


def test_pass_via_spf(domain: Zone) -> None:
    results = run(domain, message())
    assert (results.dmarc.result, results.dmarc.spf_aligned, results.dmarc.dkim_aligned) == \
        ("pass", True, False)
    assert default_decision(results, settings()).action == "accept"


def test_pass_via_dkim(domain: Zone) -> None:
    results = run(domain, sign(message(), domain="example.com"), sender="x@elsewhere.example")
    assert results.spf.result == "none"
    assert (results.dmarc.result, results.dmarc.dkim_aligned) == ("pass", True)


def test_relaxed_alignment_of_a_subdomain_and_strict_refusal(domain: Zone) -> None:
    domain.txt("mail.example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    results = run(domain, message(), sender="b@mail.example.com")
    assert results.dmarc.result == "pass"
    domain.records[("_dmarc.example.com", "TXT")] = ["v=DMARC1; p=reject; aspf=s"]
    assert run(domain, message(), sender="b@mail.example.com").dmarc.result == "fail"


def test_unaligned_pass_is_a_fail(domain: Zone) -> None:
    domain.txt("other.example", "v=spf1 ip4:192.0.2.0/24 -all")
    domain.txt("sel._domainkey.other.example", txt_chunks(rsa_key()[1]))  # type: ignore[arg-type]
    results = run(domain, sign(message(), domain="other.example"), sender="b@other.example")
    assert results.spf.result == "pass" and results.dkim_result == "pass"
    assert results.dmarc.result == "fail"


@pytest.mark.parametrize("policy, action", [("none", "accept"), ("quarantine", "quarantine"),
                                            ("reject", "reject")])
def test_fail_with_each_policy(zone: Zone, policy: str, action: str) -> None:
    zone.txt("example.com", "v=spf1 -all")
    zone.txt("_dmarc.example.com", f"v=DMARC1; p={policy}")
    results = run(zone, message())
    assert (results.dmarc.result, results.dmarc.disposition) == ("fail", policy)
    decision = default_decision(results, settings())
    assert decision.action == action
    if action == "reject":
        assert decision.text.startswith("5.7.1") and "example.com" in decision.text
    if action == "quarantine":
        assert decision.quarantine == "dmarc"


def test_defaults_are_configurable(zone: Zone) -> None:
    zone.txt("example.com", "v=spf1 -all")
    zone.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    results = run(zone, message())
    assert default_decision(results, settings(reject=False)).action == "quarantine"
    assert default_decision(results, settings(reject=False, quarantine=False)).action == "accept"


def test_pct_samples_out_to_the_next_less_strict_policy(zone: Zone) -> None:
    zone.txt("example.com", "v=spf1 -all")
    zone.txt("_dmarc.example.com", "v=DMARC1; p=reject; pct=20")
    inside = run(zone, message(), sample=0.1)
    outside = run(zone, message(), sample=0.5)
    assert (inside.dmarc.disposition, inside.dmarc.sampled_out) == ("reject", False)
    assert (outside.dmarc.disposition, outside.dmarc.sampled_out) == ("quarantine", True)
    zone.records[("_dmarc.example.com", "TXT")] = ["v=DMARC1; p=quarantine; pct=0"]
    assert run(zone, message(), sample=0.0).dmarc.disposition == "none"


def test_subdomain_policy_from_the_org_domain(zone: Zone) -> None:
    zone.txt("news.example.com", "v=spf1 -all")
    zone.txt("_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine")
    results = run(zone, message(sender="a@news.example.com"), sender="b@news.example.com")
    assert (results.dmarc.result, results.dmarc.policy_domain, results.dmarc.policy,
            results.dmarc.disposition) == ("fail", "example.com", "quarantine", "quarantine")
    zone.txt("_dmarc.news.example.com", "v=DMARC1; p=none")
    assert run(zone, message(sender="a@news.example.com"), sender="b@news.example.com"
               ).dmarc.disposition == "none"


def test_org_domain_under_a_multi_label_suffix(zone: Zone) -> None:
    zone.txt("_dmarc.example.co.uk", "v=DMARC1; p=reject")
    results = run(zone, message(sender="a@shop.example.co.uk"), sender="")
    assert (results.dmarc.org_domain, results.dmarc.policy_domain) == ("example.co.uk", "example.co.uk")


def test_no_record_is_none(zone: Zone) -> None:
    zone.txt("example.com", "v=spf1 -all")
    assert run(zone, message()).dmarc.result == "none"


def test_several_records_are_no_policy(zone: Zone) -> None:
    zone.txt("_dmarc.example.com", "v=DMARC1; p=reject", "v=DMARC1; p=none")
    assert run(zone, message()).dmarc.result == "none"


def test_dns_timeout_is_a_temperror_and_accepted(zone: Zone) -> None:
    zone.timeouts.add("_dmarc.example.com")
    results = run(zone, message())
    assert results.dmarc.result == "temperror"
    assert default_decision(results, settings()).action == "accept"
    assert default_decision(results, settings(temperror="defer")).action == "defer"


def test_spf_temperror_does_not_fail_dmarc(zone: Zone) -> None:
    zone.timeouts.add("example.com")
    zone.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    assert run(zone, message()).dmarc.result == "temperror"


def test_several_from_fields_are_a_permerror(zone: Zone) -> None:
    msg = message(extra="From: mallory@evil.example\r\n")
    results = run(zone, msg)
    assert results.dmarc.result == "permerror"
    assert default_decision(results, settings()).action == "accept"


def test_arc_override_only_when_asked(domain: Zone) -> None:
    import dataclasses

    from appliance.mailauth.verify import ArcResult

    domain.records[("example.com", "TXT")] = ["v=spf1 -all"]
    results = dataclasses.replace(run(domain, message()), arc=ArcResult("pass"))
    assert default_decision(results, settings()).action == "reject"
    assert default_decision(results, settings(arc_override=True)).action == "accept"


def test_record_parsing() -> None:
    record = parse_record("v=DMARC1; p=quarantine; sp=none; pct=50; adkim=s; "
                          "rua=mailto:a@example.com!10m, mailto:b@example.net, https://x; ruf=mailto:f@example.com")
    assert (record.p, record.sp, record.pct, record.adkim, record.aspf) == ("quarantine", "none", 50, "s", "r")
    assert [(u.address, u.limit) for u in record.rua] == [("a@example.com", 10 * 1024 * 1024),
                                                         ("b@example.net", 0)]
    assert parse_record("v=DMARC1; rua=mailto:a@example.com").p == "none"  # §6.6.3 step 6
    for bad in ("v=DMARC2; p=none", "p=none; v=DMARC1", "v=DMARC1; p=maybe", "v=DMARC1; p"):
        with pytest.raises(RecordError):
            parse_record(bad)


def test_header_and_metadata(domain: Zone) -> None:
    results = run(domain, sign(message(), domain="example.com"))
    header = results.header_value("gw.example.net")
    assert header.startswith("gw.example.net; ")
    for part in ("dkim=pass", "header.d=example.com", "spf=pass", "smtp.mailfrom=bounce@example.com",
                 "dmarc=pass", "header.from=example.com"):
        assert part in header
    meta = results.metadata()
    assert meta["dkim"] == "pass" and meta["spf"] == "pass" and meta["dmarc"] == "pass"
    assert meta["dmarc_domain"] == "example.com" and meta["dkim_domain"] == "example.com"
    assert results.lua()["dmarc"]["result"] == "pass"


def test_dnssec_recorded_in_results(domain: Zone) -> None:
    domain.secure.add("_dmarc.example.com")
    results = run(domain, message())
    assert results.dmarc.dnssec is True
    assert "dmarc" in results.metadata()["dnssec"]


def test_a_bug_in_a_check_is_a_temperror_not_a_crash(zone: Zone) -> None:
    class Broken:
        def query(self, name: str, rdtype: str, *, timeout: float | None = None):
            raise RuntimeError("resolver exploded")

    results = Checker(Broken(), orgs=ORGS).check(message(), client_ip=IP, sender="a@example.com",
                                                 helo="h", settings=settings())
    assert results.dmarc.result in ("temperror", "permerror", "none")
    assert default_decision(results, settings()).action == "accept"
