"""Relay control: which recipients a client may send to (who may use the node as a relay)."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

RELAY_DENIED = "5.7.1 Relay access denied"
LITERAL_REFUSED = "5.7.1 Address literals are not accepted as recipients here"


@dataclasses.dataclass(frozen=True)
class RelayRules:
    """Postfix's model (smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated,
    reject_unauth_destination): mail for the local `domains` is taken from anyone; mail for
    any other domain only from authenticated clients and clients in `networks`.

    A recipient at an address literal (r@[192.0.2.1], RFC 5321 §4.1.3) is refused from every
    client unless `address_literals`: it names a host directly, so it would relay to whatever
    the client chooses, the node itself and the hosts of its network included.
    """

    networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in LOOPBACK)
    domains: frozenset[str] = frozenset()  # lower case; ".example.com" also matches subdomains
    address_literals: bool = False

    @classmethod
    def of(cls, *, networks: Iterable[str], domains: Iterable[str],
           address_literals: bool = False) -> RelayRules:
        return cls(networks=tuple(ipaddress.ip_network(n, strict=False) for n in networks),
                   domains=frozenset(d.lower().rstrip(".") for d in domains),
                   address_literals=address_literals)

    def refusal(self, recipient: str, *, client_ip: str, authenticated: bool) -> tuple[int, str] | None:
        """(code, text) refusing `recipient` from this client, or None when it may be relayed."""
        domain = recipient.rpartition("@")[2].lower().rstrip(".")
        if domain.startswith("["):
            return None if self.address_literals else (550, LITERAL_REFUSED)
        if self.is_local(domain) or authenticated or self.is_mynetwork(client_ip):
            return None
        return 554, RELAY_DENIED

    def is_local(self, domain: str) -> bool:
        if domain in self.domains:
            return True
        parts = domain.split(".")
        return any("." + ".".join(parts[i:]) in self.domains for i in range(1, len(parts)))

    def is_mynetwork(self, client_ip: str) -> bool:
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:192.0.2.1 on a dual-stack socket
        return any(address in network for network in self.networks)
