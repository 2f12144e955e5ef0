"""The DNS seam: dnspython against a loopback server, the AD bit, timeouts, the bounded cache."""

from __future__ import annotations

import pytest

from appliance.mailauth.dns import Answer, Budget, CachedLookup, DnsPythonLookup, DnsTempError
from appliance.mailauth.results import strip_own
from tests.support.dnszone import Zone, served


def test_dnspython_answers_nxdomain_nodata_ad_and_timeouts() -> None:
    zone = Zone().txt("example.com", "v=spf1 -all", ["part one ", "part two"])
    zone.add("example.com", "MX", (10, "mx.example.com")).add("mx.example.com", "A", "192.0.2.1")
    zone.txt("_dmarc.secure.example", "v=DMARC1; p=none")
    zone.secure.add("_dmarc.secure.example")
    zone.timeouts.add("slow.example")
    with served(zone) as port:
        lookup = DnsPythonLookup(timeout=0.5, nameservers=[f"127.0.0.1:{port}"])
        txt = lookup.query("example.com", "TXT")
        assert sorted(b"".join(r) for r in txt.records) == [b"part one part two", b"v=spf1 -all"]
        assert not txt.authenticated and txt.ttl == 300
        assert lookup.query("example.com", "MX").records == ((10, "mx.example.com"),)
        assert lookup.query("mx.example.com", "A").records == ("192.0.2.1",)
        assert lookup.query("_dmarc.secure.example", "TXT").authenticated
        missing = lookup.query("nothing.example", "TXT")
        assert (missing.exists, missing.records) == (False, ())
        assert lookup.query("mx.example.com", "TXT").records == ()
        with pytest.raises(DnsTempError):
            lookup.query("slow.example", "TXT")


class Counting:
    def __init__(self, ttl: float = 60.0) -> None:
        self.calls = 0
        self.ttl = ttl

    def query(self, name: str, rdtype: str, *, timeout: float | None = None) -> Answer:
        self.calls += 1
        if name == "fail.example":
            raise DnsTempError("no")
        return Answer(records=((name.encode(),),), ttl=self.ttl)


def test_cache_respects_ttl_and_size() -> None:
    now = [0.0]
    inner = Counting()
    cache = CachedLookup(inner, max_entries=2, clock=lambda: now[0])
    cache.query("a.example", "TXT")
    cache.query("A.example.", "TXT")
    assert inner.calls == 1
    now[0] = 61
    cache.query("a.example", "TXT")
    assert inner.calls == 2
    cache.query("b.example", "TXT")
    cache.query("c.example", "TXT")
    assert len(cache) == 2  # a.example went first
    cache.query("a.example", "TXT")
    assert inner.calls == 5
    with pytest.raises(DnsTempError):
        cache.query("fail.example", "TXT")
    with pytest.raises(DnsTempError):
        cache.query("fail.example", "TXT")
    assert inner.calls == 7  # failures are not cached


def test_cache_caps_the_ttl() -> None:
    now = [0.0]
    inner = Counting(ttl=86400)
    cache = CachedLookup(inner, max_ttl=10, clock=lambda: now[0])
    cache.query("a.example", "TXT")
    now[0] = 11
    cache.query("a.example", "TXT")
    assert inner.calls == 2


def test_budget_gives_each_lookup_what_is_left() -> None:
    now = [0.0]
    seen: list[float | None] = []

    class Recording:
        def query(self, name: str, rdtype: str, *, timeout: float | None = None) -> Answer:
            seen.append(timeout)
            now[0] += 4
            return Answer()

    budget = Budget(Recording(), seconds=10, per_lookup=5, clock=lambda: now[0])
    budget.query("a", "TXT")
    budget.query("b", "TXT")
    budget.query("c", "TXT")
    with pytest.raises(DnsTempError):
        budget.query("d", "TXT")
    assert seen == [5, 5, 2]


def test_forged_results_with_our_id_are_removed() -> None:
    msg = (b"Authentication-Results: gw.example.net; dmarc=pass\r\n header.from=example.com\r\n"
           b"Authentication-Results: other.example; spf=fail\r\n"
           b"Subject: hi\r\n\r\nbody\r\n")
    out = strip_own(msg, "gw.example.net")
    assert b"gw.example.net" not in out
    assert b"other.example; spf=fail" in out and out.endswith(b"Subject: hi\r\n\r\nbody\r\n")
