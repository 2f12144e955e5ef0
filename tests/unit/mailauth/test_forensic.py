"""DMARC failure reports: the fo= selection, the AFRF report read back with the email package,
the in-process rate window, and the [mailauth] forensic settings' validation."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import email.utils
from types import SimpleNamespace
from typing import Any

import dkim
import pytest
from pydantic import ValidationError

from appliance.config.document import parse
from appliance.config.schema import MailAuthSection
from appliance.mailauth.check import Checker
from appliance.mailauth.dmarc import DmarcRecord, DmarcResult, OrgDomains, ReportUri
from appliance.mailauth.forensic import (
    Failure, ForensicReporter, build_report, fo_options, failure_type, message_headers)
from appliance.mailauth.results import AuthResults
from appliance.mailauth.spf import SpfResult
from appliance.mailauth.verify import ArcResult, DkimResult
from tests.support.dkimkeys import message, rsa_key, txt_chunks
from tests.support.dnszone import Zone, ZoneLookup
from tests.unit.mailauth.conftest import settings

RUF = (ReportUri("ruf@example.com"),)


def results(*, dmarc: str = "fail", fo: str = "0", spf: str = "fail", spf_aligned: bool = False,
            dkim: tuple[DkimResult, ...] = (), dkim_aligned: bool = False,
            ruf: tuple[ReportUri, ...] = RUF) -> AuthResults:
    record = DmarcRecord(p="reject", sp="reject", fo=fo, ruf=ruf)
    return AuthResults(
        spf=SpfResult(spf, "example.com", "mfrom"), dkim=dkim,
        dmarc=DmarcResult(dmarc, "example.com", "example.com", "example.com", record,
                          spf_aligned=spf_aligned, dkim_aligned=dkim_aligned),
        arc=ArcResult("none"), client_ip="192.0.2.9", sender="bounce@example.com", helo="h")


GOOD = DkimResult("pass", "example.com", "sel")
BAD = DkimResult("fail", "example.com", "sel", "signature did not verify")


@pytest.mark.parametrize(("case", "want"), [
    (dict(), "dmarc"),  # fo=0 (the default): no aligned pass
    (dict(dmarc="pass", spf="pass", spf_aligned=True, dkim=(GOOD,), dkim_aligned=True), ""),
    (dict(dmarc="pass", spf="pass", spf_aligned=True), ""),  # fo=0: one aligned pass is enough
    (dict(dmarc="pass", spf="pass", spf_aligned=True, fo="1"), "dmarc"),  # fo=1: DKIM had none
    (dict(dmarc="pass", spf="pass", spf_aligned=True, dkim=(GOOD,), dkim_aligned=True, fo="1"), ""),
    (dict(dmarc="pass", spf="pass", spf_aligned=True, dkim=(BAD,), fo="d"), "signature"),
    (dict(dmarc="pass", spf="pass", spf_aligned=True, fo="d"), ""),  # no signature failed
    (dict(dmarc="pass", spf="softfail", dkim=(GOOD,), dkim_aligned=True, fo="s"), "spf"),
    (dict(dmarc="pass", spf="pass", dkim=(GOOD,), dkim_aligned=True, fo="s"), ""),
    (dict(fo="s"), "dmarc"),  # DMARC failed and SPF failed: the type is dmarc
    (dict(spf="pass", fo="d"), ""),  # fo=d alone: a DMARC failure without a failed signature
    (dict(dmarc="pass", spf="fail", dkim=(GOOD,), dkim_aligned=True, fo="0:s"), "spf"),
    (dict(fo="x:y"), "dmarc"),  # unknown options only: the default 0
    (dict(ruf=()), ""),  # no ruf=: nobody to report to
    (dict(dmarc="temperror"), ""),
])
def test_fo_selects_the_failures_reported(case: dict[str, Any], want: str) -> None:
    assert failure_type(results(**case)) == want


def test_fo_options() -> None:
    assert fo_options("0") == {"0"} and fo_options(" 1 : D ") == {"1", "d"}
    assert fo_options("") == {"0"} and fo_options("bogus") == {"0"}


def checked() -> tuple[AuthResults, bytes]:
    """A real check of a message whose DKIM signature is broken and whose SPF fails."""
    zone = Zone()
    zone.txt("sel._domainkey.example.com", txt_chunks(rsa_key()[1]))  # type: ignore[arg-type]
    zone.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    zone.txt("_dmarc.example.com", "v=DMARC1; p=reject; fo=1; ruf=mailto:ruf@example.com!10m")
    original = message(subject="Hi")
    signature = dkim.sign(original, b"sel", b"example.com", rsa_key()[0], identity=b"@example.com",
                          include_headers=[b"from", b"to", b"subject"])
    content = (signature + original).replace(b"Hello Bob.", b"Hello Eve.")  # the body changed
    out = Checker(ZoneLookup(zone), orgs=OrgDomains()).check(
        content, client_ip="198.51.100.7", sender="alice@example.com", helo="h", settings=settings())
    return out, content


def failure(res: AuthResults, content: bytes, **changes: Any) -> Failure:
    values: dict[str, Any] = dict(
        results=res, auth_failure=failure_type(res), headers=message_headers(content),
        recipients=("bob@example.net", "carol@example.net"), arrival=1_800_000_000.0,
        delivery_result="reject", authentication_results="gw.example.net; dmarc=fail",
        lookup=ZoneLookup(Zone()))
    values.update(changes)
    return Failure(**values)


def test_the_report_is_an_afrf_with_headers_only() -> None:
    res, content = checked()
    assert res.dmarc.result == "fail" and res.dkim[0].result == "fail"
    data, subject = build_report(failure(res, content), sender="dmarc@gw.example.net",
                                 recipient="ruf@example.com", hostname="gw.example.net",
                                 now=1_800_000_060.0)
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    mail = email.message_from_bytes(data, policy=email.policy.default)
    assert mail.get_content_type() == "multipart/report"
    assert mail.get_param("report-type") == "feedback-report"
    assert (mail["From"], mail["To"], mail["Subject"]) == (
        "dmarc@gw.example.net", "ruf@example.com", subject)
    assert mail["Auto-Submitted"] == "auto-generated"
    human, report, headers = mail.get_payload()  # type: ignore[misc]
    assert human.get_content_type() == "text/plain" and "example.com" in human.get_content()
    assert report.get_content_type() == "message/feedback-report"
    assert headers.get_content_type() == "text/rfc822-headers"
    fields = email.message_from_string(report.get_payload()[0].as_string()
                                       if report.is_multipart() else report.get_payload())
    assert fields["Feedback-Type"] == "auth-failure"
    assert fields["Version"] == "1"
    assert fields["User-Agent"].startswith("appliance/")
    assert fields["Auth-Failure"] == "dmarc"
    assert fields["Original-Mail-From"] == "<alice@example.com>"
    assert fields.get_all("Original-Rcpt-To") == ["<bob@example.net>", "<carol@example.net>"]
    assert email.utils.parsedate_to_datetime(fields["Arrival-Date"]).timestamp() == 1_800_000_000
    assert fields["Source-IP"] == "198.51.100.7"
    assert fields["Reported-Domain"] == "example.com"
    assert fields["Authentication-Results"] == "gw.example.net; dmarc=fail"
    assert fields["DKIM-Domain"] == "example.com"
    assert fields["DKIM-Identity"] == "@example.com"
    assert fields["DKIM-Selector"] == "sel"
    assert fields["Delivery-Result"] == "reject"
    original = headers.get_payload(decode=True)
    assert b"Subject: Hi" in original and b"DKIM-Signature:" in original
    assert b"Hello" not in data  # no body: as little as possible leaves the node


def test_hostile_values_stay_on_one_line() -> None:
    res, content = checked()
    evil = failure(res, content, recipients=("a@b.example\r\nBcc: x@evil.example",),
                   authentication_results="gw; dmarc=fail\r\nX-Injected: 1")
    data, _ = build_report(evil, sender="d@gw.example.net", recipient="ruf@example.com",
                           hostname="gw.example.net", now=1.0)
    assert b"\r\nBcc:" not in data and b"\r\nX-Injected" not in data


def config(**section: Any) -> Any:
    return SimpleNamespace(mailauth=MailAuthSection(enabled=True, **section),
                           node=SimpleNamespace(hostname="gw.example.net"), transports=[])


def test_a_flood_is_cut_by_the_domain_window_before_it_costs_a_transaction() -> None:
    res, content = checked()
    cfg = config(forensic_reports=True, forensic_rate=3, forensic_interval=60)
    reporter = ForensicReporter(store=None, spool=None, config=lambda: cfg)  # type: ignore[arg-type]
    t0 = 1_800_000_000.0
    taken = [reporter.submit(failure(res, content, arrival=t0 + i)) for i in range(10)]
    assert taken == [True] * 3 + [False] * 7 and reporter.dropped == 7
    moved = dataclasses.replace(res.dmarc, from_domain="other.example", policy_domain="other.example")
    other = failure(res, content, arrival=t0 + 11, results=dataclasses.replace(res, dmarc=moved))
    assert reporter.submit(other)  # another domain has a window of its own
    assert reporter.submit(failure(res, content, arrival=t0 + 61))  # the window moved on
    assert not reporter.running  # start() was not called: nothing started a thread


def test_only_where_the_config_asks() -> None:
    res, _ = checked()
    reporter = ForensicReporter(store=None, spool=None, config=lambda: None)  # type: ignore[arg-type]
    assert reporter.wanted(res, config().mailauth) == ""  # off by default
    assert reporter.wanted(res, config(forensic_reports=True).mailauth) == "dmarc"
    allowed = config(forensic_reports=True, forensic_domains=["Example.COM"]).mailauth
    assert allowed.forensic_domains == ["example.com"] and reporter.wanted(res, allowed) == "dmarc"
    elsewhere = config(forensic_reports=True, forensic_domains=["example.org"]).mailauth
    assert reporter.wanted(res, elsewhere) == ""


def test_config_switches_and_bad_values() -> None:
    section = parse("[mailauth]\nenabled = true\nforensic_reports = true\n"
                    'forensic_domains = ["example.com"]\nforensic_rate = 5\n').mailauth
    assert section.forensic_reports and section.forensic_rate == 5
    assert MailAuthSection().forensic_reports is False
    for bad, word in (({"forensic_domains": ["not a domain!"]}, "forensic_domains"),
                      ({"forensic_rate": 0}, "forensic_rate"),
                      ({"forensic_interval": 5}, "forensic_interval"),
                      ({"forensic_reports": "sometimes"}, "forensic_reports")):
        with pytest.raises(ValidationError, match=word):
            MailAuthSection(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="forensic_rate"):
        parse("[mailauth]\nforensic_rate = -1\n")
