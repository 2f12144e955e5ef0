"""Where a destination's connections go: a static next hop, or MX records with A/AAAA fallback."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from typing import Protocol

from appliance.delivery.grouping import Destination
from appliance.mailauth.dns import Answer, DnsTempError, Lookup


class RouteError(Exception):
    """No usable host. `permanent` for answers that will not change (no such domain, null MX)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Resolver(Protocol):
    """The DNS edge. Implementations raise RouteError for failed lookups."""

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        """(preference, exchange) pairs; [] when the domain exists but has no MX records."""

    async def addresses(self, host: str) -> list[str]:
        """IPv4 and IPv6 addresses of a host; [] when it has none."""


@dataclasses.dataclass(frozen=True)
class Hop:
    """One address to try: `name` is what TLS verifies and logs show, `address` what we dial."""

    name: str
    address: str
    port: int


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _addresses(resolver: Resolver, host: str) -> list[str]:
    return [host] if _is_ip(host) else await resolver.addresses(host)


async def hops_for(destination: Destination, *, port: int, resolver: Resolver) -> list[Hop]:
    """The ordered addresses to try for a destination (RFC 5321 section 5.1)."""
    if destination.nexthop:
        host, _, nport = destination.nexthop.rpartition(":")
        host = host.strip("[]")
        addrs = await _addresses(resolver, host)
        if not addrs:
            raise RouteError(f"next hop {host} has no address", permanent=False)
        return [Hop(host, a, int(nport)) for a in addrs]
    domain = destination.domain
    if not domain:
        raise RouteError("recipient has no domain", permanent=True)
    records = sorted(await resolver.mx(domain))
    # RFC 7505: a single MX of "." (null MX) says the domain accepts no mail.
    if len(records) == 1 and records[0][1].rstrip(".") == "":
        raise RouteError(f"domain {domain} accepts no mail (null MX)", permanent=True)
    # Section 5.1: no MX records means the domain itself is the implicit MX.
    names = [name.rstrip(".") for _, name in records] or [domain]
    hops: list[Hop] = []
    errors: list[str] = []
    for name in names:
        try:
            hops.extend(Hop(name, a, port) for a in await _addresses(resolver, name))
        except RouteError as exc:
            errors.append(str(exc))
    if not hops:
        detail = "; ".join(errors) or "no A/AAAA records"
        raise RouteError(f"no address for {domain}: {detail}", permanent=not records and not errors)
    return hops


class DnsResolver:
    """The real resolver (dnspython's asyncio stub resolver, the system's configuration)."""

    def __init__(self, *, timeout: float = 10.0) -> None:
        import dns.asyncresolver

        self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = timeout

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        import dns.resolver

        try:
            answer = await self._resolver.resolve(domain, "MX")
        except dns.resolver.NXDOMAIN as exc:
            raise RouteError(f"domain {domain} does not exist", permanent=True) from exc
        except dns.resolver.NoAnswer:
            return []
        except dns.exception.DNSException as exc:
            raise RouteError(f"MX lookup for {domain} failed: {exc}", permanent=False) from exc
        return [(r.preference, r.exchange.to_text(omit_final_dot=True)) for r in answer]

    async def addresses(self, host: str) -> list[str]:
        import dns.resolver

        out: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self._resolver.resolve(host, rdtype)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as exc:
                raise RouteError(f"address lookup for {host} failed: {exc}", permanent=False) from exc
            out.extend(r.to_text() for r in answer)
        return out


class LookupResolver:
    """Delivery's Resolver over the mail-auth DNS seam (appliance.mailauth.dns.Lookup): one
    resolver, with its TTL cache and AD bits, can answer routing and the inbound checks alike.
    Lookups run in a thread (the seam is synchronous)."""

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup

    async def _query(self, name: str, rdtype: str) -> Answer:
        try:
            return await asyncio.to_thread(self.lookup.query, name, rdtype)
        except DnsTempError as exc:
            raise RouteError(f"{rdtype} lookup for {name} failed: {exc}", permanent=False) from exc

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        answer = await self._query(domain, "MX")
        if not answer.exists:
            raise RouteError(f"domain {domain} does not exist", permanent=True)
        return [(int(pref), str(host)) for pref, host in answer.records]

    async def addresses(self, host: str) -> list[str]:
        out: list[str] = []
        for rdtype in ("A", "AAAA"):
            out.extend(str(a) for a in (await self._query(host, rdtype)).records)
        return out
