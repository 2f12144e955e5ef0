"""`dnslookup NAME [TYPE]`: DNS records through the node's resolver (dnspython, injected)."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import time
from collections.abc import Sequence

import dns.exception
import dns.resolver
import dns.reversename

from appliance.commands.base import ArgvParser, CommandContext, CommandSpec, DnsResolver, Terminal

TYPES = ("A", "AAAA", "MX", "TXT", "PTR", "NS", "CNAME", "SOA", "SRV", "CAA", "TLSA")
# RFC 1035 section 2.3.4: labels of at most 63 octets, names of at most 255.
_NAME = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?$")
LIFETIME = 10.0


@dataclasses.dataclass(frozen=True)
class Args:
    name: str
    rdtype: str


def parse(argv: Sequence[str]) -> Args:
    p = ArgvParser("dnslookup")
    p.add_argument("name", metavar="NAME")
    p.add_argument("rdtype", nargs="?", metavar="TYPE")
    ns = p.parse_argv(argv)
    name, rdtype = ns.name, (ns.rdtype or "").upper()
    if _is_ip(name):
        rdtype = rdtype or "PTR"
        if rdtype == "PTR":
            name = dns.reversename.from_address(name).to_text()
    elif len(name) > 253 or not _NAME.match(name):
        p.error(f"not a domain name: {name!r}")
    rdtype = rdtype or "A"
    if rdtype not in TYPES:
        p.error(f"TYPE must be one of {', '.join(TYPES)}")
    return Args(name=name, rdtype=rdtype)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def run(ctx: CommandContext, args: Args, term: Terminal) -> None:
    resolver: DnsResolver = ctx.need("resolver")
    started = time.monotonic()
    try:
        answer = resolver.resolve(args.name, args.rdtype, lifetime=LIFETIME)
    except dns.resolver.NXDOMAIN:
        term.write(f"{args.name}: no such domain (NXDOMAIN)\n")
    except dns.resolver.NoAnswer:
        term.write(f"{args.name}: no {args.rdtype} records\n")
    except dns.exception.Timeout:
        term.write(f"{args.name}: no answer within {LIFETIME:g} s\n")
    except dns.exception.DNSException as exc:
        term.write(f"{args.name}: lookup failed: {exc}\n")
    else:
        rrset = answer.rrset
        for rdata in rrset:
            term.write(f"{rrset.name.to_text()}\t{rrset.ttl}\tIN\t{args.rdtype}\t{rdata.to_text()}\n")
    term.write(f";; {args.rdtype} {args.name}: {(time.monotonic() - started) * 1000:.1f} ms\n")


def system_resolver() -> DnsResolver | None:
    """The resolver /etc/resolv.conf describes, or None on a machine without one."""
    try:
        return dns.resolver.Resolver()
    except dns.resolver.NoResolverConfiguration:
        return None


SPEC = CommandSpec(
    name="dnslookup",
    usage="dnslookup NAME [TYPE]",
    description=f"Look up DNS records of NAME (TYPE one of {', '.join(TYPES)}; an IP address means PTR)",
    parse=parse,
    run=run,
)
