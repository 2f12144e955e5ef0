"""Delivery's MX routing answered through the mail-auth DNS seam (one resolver for both)."""

from __future__ import annotations

import asyncio

import pytest

from appliance.delivery.grouping import Destination
from appliance.delivery.routing import LookupResolver, RouteError, hops_for
from appliance.mailauth.dns import CachedLookup
from tests.support.dnszone import Zone, ZoneLookup


def test_mx_routing_through_the_seam() -> None:
    zone = Zone().add("example.com", "MX", (20, "mx2.example.com"), (10, "mx1.example.com"))
    zone.add("mx1.example.com", "A", "192.0.2.1").add("mx2.example.com", "AAAA", "2001:db8::2")
    zone.timeouts.add("slow.example")
    resolver = LookupResolver(CachedLookup(ZoneLookup(zone)))
    hops = asyncio.run(hops_for(Destination(transport="default", domain="example.com"), port=25,
                                resolver=resolver))
    assert [(h.name, h.address) for h in hops] == [("mx1.example.com", "192.0.2.1"),
                                                   ("mx2.example.com", "2001:db8::2")]
    with pytest.raises(RouteError) as missing:
        asyncio.run(resolver.mx("nothing.example"))
    assert missing.value.permanent
    with pytest.raises(RouteError) as slow:
        asyncio.run(resolver.mx("slow.example"))
    assert not slow.value.permanent
