"""Route resolution: static next hops, MX preference, implicit MX, null MX, lookup failures."""

from __future__ import annotations

import asyncio

import pytest

from appliance.delivery.grouping import Destination
from appliance.delivery.routing import Hop, RouteError, hops_for


class Resolver:
    def __init__(self, mx: dict[str, list[tuple[int, str]]], hosts: dict[str, list[str]],
                 failing: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self._mx, self._hosts, self._failing = mx, hosts, failing

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        if domain in self._failing:
            raise RouteError("SERVFAIL", permanent=False)
        return self._mx.get(domain, [])

    async def addresses(self, host: str) -> list[str]:
        if host in self._failing:
            raise RouteError("SERVFAIL", permanent=False)
        return self._hosts.get(host, [])


def _hops(dest: Destination, resolver: Resolver) -> list[Hop]:
    return asyncio.run(hops_for(dest, port=25, resolver=resolver))


def test_static_nexthop_ip_and_name() -> None:
    r = Resolver({}, {"relay.test": ["10.0.0.1", "::1"]})
    assert _hops(Destination("t", nexthop="192.0.2.1:2525"), r) == [Hop("192.0.2.1", "192.0.2.1", 2525)]
    assert _hops(Destination("t", nexthop="[::1]:26"), r) == [Hop("::1", "::1", 26)]
    assert _hops(Destination("t", nexthop="relay.test:587"), r) == [
        Hop("relay.test", "10.0.0.1", 587), Hop("relay.test", "::1", 587)]
    with pytest.raises(RouteError) as err:
        _hops(Destination("t", nexthop="gone.test:25"), r)
    assert not err.value.permanent


def test_mx_in_preference_order_skipping_unresolvable_hosts() -> None:
    r = Resolver({"d.test": [(20, "b.d.test."), (10, "a.d.test."), (30, "bad.d.test")]},
                 {"a.d.test": ["10.0.0.1"], "b.d.test": ["10.0.0.2"]}, failing={"bad.d.test"})
    assert [h.address for h in _hops(Destination("t", domain="d.test"), r)] == ["10.0.0.1", "10.0.0.2"]
    assert _hops(Destination("t", domain="d.test"), r)[0] == Hop("a.d.test", "10.0.0.1", 25)


def test_no_mx_means_the_domain_itself_and_none_at_all_is_permanent() -> None:
    r = Resolver({}, {"plain.test": ["10.0.0.3"]})
    assert _hops(Destination("t", domain="plain.test"), r) == [Hop("plain.test", "10.0.0.3", 25)]
    with pytest.raises(RouteError) as err:
        _hops(Destination("t", domain="void.test"), r)
    assert err.value.permanent


def test_null_mx_is_permanent_and_dns_failure_temporary() -> None:
    r = Resolver({"nomail.test": [(0, ".")]}, {}, failing={"flaky.test"})
    with pytest.raises(RouteError) as err:
        _hops(Destination("t", domain="nomail.test"), r)
    assert err.value.permanent and "null MX" in str(err.value)
    with pytest.raises(RouteError) as err:
        _hops(Destination("t", domain="flaky.test"), r)
    assert not err.value.permanent
    r2 = Resolver({"d.test": [(10, "mx.d.test")]}, {}, failing={"mx.d.test"})
    with pytest.raises(RouteError) as err:
        _hops(Destination("t", domain="d.test"), r2)
    assert not err.value.permanent
