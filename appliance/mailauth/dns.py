"""The DNS seam of mail authentication: one Protocol, dnspython behind it, a TTL cache, a budget.

Every lookup the checks make (SPF, DKIM keys, DMARC records, report authorisations) goes
through a `Lookup`. Answers carry the AD bit (RFC 4035 §3.2.3, RFC 6840 §5.7): a validating
resolver sets it on data it has DNSSEC-validated, and the checks record it in their results.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

# What a record looks like in an Answer, by type: TXT -> tuple of bytes strings (one record's
# character-strings); A/AAAA/PTR/CNAME -> text; MX -> (preference, exchange).
Record = Any


class DnsTempError(Exception):
    """A lookup that did not get an answer (timeout, SERVFAIL, budget spent): try later."""


@dataclasses.dataclass(frozen=True)
class Answer:
    """What one lookup found. `exists` is False for NXDOMAIN; `records` is empty then and for
    NODATA. `authenticated` is the answer's AD bit; `ttl` how long it may be cached."""

    records: tuple[Record, ...] = ()
    exists: bool = True
    authenticated: bool = False
    ttl: float = 300.0


NXDOMAIN = Answer(exists=False)


class Lookup(Protocol):
    """The DNS edge: one query, an Answer, or DnsTempError when no answer came in time."""

    def query(self, name: str, rdtype: str, *, timeout: float | None = None) -> Answer: ...


def _records(rdtype: str, answer: Any) -> tuple[Record, ...]:
    if rdtype in ("TXT", "SPF"):
        return tuple(tuple(r.strings) for r in answer)
    if rdtype == "MX":
        return tuple((r.preference, r.exchange.to_text(omit_final_dot=True)) for r in answer)
    if rdtype in ("PTR", "CNAME"):
        return tuple(r.target.to_text(omit_final_dot=True) for r in answer)
    return tuple(r.to_text() for r in answer)


def _nameserver(text: str) -> Any:
    """"ADDRESS" or "ADDRESS:PORT" / "[ADDRESS]:PORT" as a dnspython name server."""
    import dns.nameserver

    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and (host.startswith("[") or "." in host):
        return dns.nameserver.Do53Nameserver(host.strip("[]"), int(port))
    return dns.nameserver.Do53Nameserver(text)


class DnsPythonLookup:
    """The real resolver: dnspython's stub resolver (the system's configuration), asking for the
    AD bit. `negative_ttl` caps how long NXDOMAIN/NODATA answers are cached."""

    def __init__(self, *, timeout: float = 5.0, negative_ttl: float = 300.0,
                 nameservers: list[str] | None = None) -> None:
        import dns.flags
        import dns.resolver

        try:
            self._resolver = dns.resolver.Resolver(configure=not nameservers)
        except dns.resolver.NoResolverConfiguration:  # no resolv.conf: every lookup a temperror
            self._resolver = dns.resolver.Resolver(configure=False)
        if nameservers:
            self._resolver.nameservers = [_nameserver(n) for n in nameservers]
        self._resolver.lifetime = timeout
        # AD in a query asks for AD in the answer without the DNSSEC records (RFC 6840 §5.7).
        self._resolver.flags = dns.flags.RD | dns.flags.AD
        self.timeout = timeout
        self.negative_ttl = negative_ttl

    def query(self, name: str, rdtype: str, *, timeout: float | None = None) -> Answer:
        import dns.exception
        import dns.flags
        import dns.resolver

        try:
            answer = self._resolver.resolve(name, rdtype, lifetime=timeout or self.timeout,
                                            search=False)
        except dns.resolver.NXDOMAIN as exc:
            response = exc.response(exc.qnames()[0]) if exc.qnames() else None
            ad = bool(response is not None and response.flags & dns.flags.AD)
            return Answer(exists=False, authenticated=ad, ttl=self.negative_ttl)
        except dns.resolver.NoAnswer as exc:
            response = exc.response()
            ad = bool(response is not None and response.flags & dns.flags.AD)
            return Answer(authenticated=ad, ttl=self.negative_ttl)
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as exc:
            raise DnsTempError(f"{rdtype} {name}: {exc}") from exc
        except dns.exception.DNSException as exc:
            raise DnsTempError(f"{rdtype} {name}: {exc}") from exc
        return Answer(records=_records(rdtype, answer),
                      authenticated=bool(answer.response.flags & dns.flags.AD),
                      ttl=float(answer.rrset.ttl if answer.rrset is not None else 0))


class CachedLookup:
    """A Lookup in front of another: answers kept for their TTL (at most `max_ttl`), at most
    `max_entries` of them (least recently used go first). Failures are not cached."""

    def __init__(self, inner: Lookup, *, max_entries: int = 10_000, max_ttl: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[tuple[str, str], tuple[float, Answer]] = \
            collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def query(self, name: str, rdtype: str, *, timeout: float | None = None) -> Answer:
        key = (name.lower().rstrip("."), rdtype.upper())
        now = self._clock()
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found[0] > now:
                self._entries.move_to_end(key)
                self.hits += 1
                return found[1]
            self.misses += 1
        answer = self.inner.query(name, rdtype, timeout=timeout)
        ttl = min(answer.ttl, self.max_ttl)
        if ttl > 0:
            with self._lock:
                self._entries[key] = (now + ttl, answer)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return answer

    def __len__(self) -> int:
        return len(self._entries)


class Budget:
    """One message's lookups: each gets what is left of the total time (DnsTempError once it is
    spent), and the AD bits of the answers are kept per purpose ("spf", "dkim", "dmarc")."""

    def __init__(self, lookup: Lookup, *, seconds: float, per_lookup: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lookup = lookup
        self._clock = clock
        self.deadline = clock() + seconds
        self.per_lookup = per_lookup
        self.count = 0
        self._authenticated: dict[str, bool] = {}

    def left(self) -> float:
        return self.deadline - self._clock()

    def query(self, name: str, rdtype: str, *, purpose: str = "") -> Answer:
        left = self.left()
        if left <= 0:
            raise DnsTempError(f"{rdtype} {name}: time budget spent")
        self.count += 1
        answer = self.lookup.query(name, rdtype, timeout=min(left, self.per_lookup))
        if purpose:
            self._authenticated[purpose] = self._authenticated.get(purpose, True) and answer.authenticated
        return answer

    def authenticated(self, purpose: str) -> bool:
        """Whether every answer asked for `purpose` had the AD bit (False if none was asked)."""
        return self._authenticated.get(purpose, False)


def txt_strings(answer: Answer) -> list[bytes]:
    """Each TXT record of an answer, its character-strings joined (RFC 7208 §3.3)."""
    return [b"".join(r) for r in answer.records]


class ResolverSettings(Protocol):
    """The resolver part of the `[mailauth]` config section."""

    @property
    def dns_timeout(self) -> float: ...
    @property
    def nameservers(self) -> list[str]: ...
    @property
    def cache_entries(self) -> int: ...
    @property
    def cache_max_ttl(self) -> float: ...


def system_lookup(section: ResolverSettings) -> Lookup:
    """The real resolver for a config: dnspython with the section's servers, timeout and cache."""
    inner = DnsPythonLookup(timeout=section.dns_timeout, nameservers=section.nameservers or None)
    if section.cache_entries <= 0:
        return inner
    return CachedLookup(inner, max_entries=section.cache_entries, max_ttl=section.cache_max_ttl)
