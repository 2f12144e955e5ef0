"""Hostile messages through the whole check: a clear result each time, never an exception."""

from __future__ import annotations

import pytest

from appliance.mailauth.check import Checker, default_decision
from appliance.mailauth.dmarc import OrgDomains
from tests.support.dkimkeys import message, rsa_key, sign, txt_chunks
from tests.support.dnszone import Zone, ZoneLookup
from tests.unit.mailauth.conftest import settings

ORGS = OrgDomains()


def hostile() -> list[bytes]:
    signed = sign(message(), domain="example.com")
    return [
        b"",
        b"\x00\xff\xfe garbage without headers",
        b"From: \r\n\r\n",
        b"From: a@\r\nFrom: b@@\r\n\r\nbody",
        b"From: <a@example.com>, <b@example.com>\r\n\r\nbody",
        b"".join(b"DKIM-Signature: v=1; d=example.com; s=sel; h=from; bh=AA==; b=AA==\r\n"
                 for _ in range(1000)) + message(),
        signed.replace(b"d=example.com", b"d=" + b"a." * 200 + b"example.com"),
        signed.replace(b"s=sel", b"s=../../etc"),
        b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x; s=y; b=AA==\r\n" + message(),
        b"ARC-Seal: garbage\r\nARC-Message-Signature: i=9\r\n" + message(),
        b"DKIM-Signature: " + b"h=" + b":".join([b"from"] * 100_000) + b"\r\n" + message(),
        message(extra="Subject: " + "x" * 100_000 + "\r\n"),
    ]


@pytest.mark.parametrize("index", range(len(hostile())))
def test_hostile_message_gets_a_clear_result(index: int) -> None:
    zone = Zone()
    zone.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    zone.txt("sel._domainkey.example.com", txt_chunks(rsa_key()[1]))  # type: ignore[arg-type]
    zone.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    results = Checker(ZoneLookup(zone), orgs=ORGS).check(
        hostile()[index], client_ip="192.0.2.10", sender="b@example.com", helo="h",
        settings=settings(max_signatures=5))
    assert results.spf.result == "pass"
    assert len(results.dkim) <= 5
    assert all(d.result in ("pass", "fail", "permerror", "temperror") for d in results.dkim)
    assert results.dmarc.result in ("pass", "fail", "none", "permerror", "temperror")
    assert results.arc.result in ("none", "pass", "fail")
    assert default_decision(results, settings()).action in ("accept", "reject")
    assert results.header_value("gw.example.net").startswith("gw.example.net;")


def test_a_spf_record_that_points_at_itself_forever(zone: Zone) -> None:
    zone.txt("example.com", "v=spf1 redirect=example.com")
    results = Checker(ZoneLookup(zone), orgs=ORGS).check(
        message(), client_ip="192.0.2.10", sender="b@example.com", helo="h", settings=settings())
    assert results.spf.result == "permerror"
