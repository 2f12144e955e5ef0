"""The checks of one inbound message at DATA: SPF, DKIM, ARC, then DMARC, within one budget."""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import logging
import random
import time
from collections.abc import Callable
from typing import Protocol

from appliance.mailauth.dmarc import DmarcResult, OrgDomains, evaluate
from appliance.mailauth.dns import Budget, Lookup
from appliance.mailauth.results import AuthResults
from appliance.mailauth.spf import SpfResult, check_spf
from appliance.mailauth.verify import ArcResult, verify_arc, verify_dkim

log = logging.getLogger(__name__)


class Settings(Protocol):
    """The parts of the `[mailauth]` config section the checks read."""

    @property
    def timeout(self) -> float: ...
    @property
    def dns_timeout(self) -> float: ...
    @property
    def max_signatures(self) -> int: ...
    @property
    def min_key_bits(self) -> int: ...
    @property
    def arc(self) -> bool: ...


@dataclasses.dataclass(frozen=True)
class Decision:
    """The default policy's answer: accept, reject, quarantine or defer, with its text."""

    action: str
    text: str = ""
    quarantine: str = ""


def _headers(message: bytes) -> list[tuple[str, str]]:
    head = message.partition(b"\r\n\r\n")[0]
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head + b"\r\n\r\n")
    return [(k, str(v)) for k, v in parsed.items()]


class Checker:
    """Runs the checks; never raises. `record` is called with each DMARC evaluation (the
    aggregate reports' input)."""

    def __init__(self, lookup: Lookup, *, orgs: OrgDomains | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sample: Callable[[], float] = random.random,
                 record: Callable[[AuthResults], None] | None = None) -> None:
        self.lookup = lookup
        self.orgs = orgs or OrgDomains()
        self.clock = clock
        self.sample = sample
        self.record = record

    def check(self, message: bytes, *, client_ip: str, sender: str, helo: str,
              settings: Settings) -> AuthResults:
        budget = Budget(self.lookup, seconds=settings.timeout, per_lookup=settings.dns_timeout,
                        clock=self.clock)
        try:
            results = self._check(message, budget, client_ip=client_ip, sender=sender, helo=helo,
                                  settings=settings)
        except Exception as exc:  # a bug or a hostile message: temperror, the message goes on
            log.exception("mail authentication failed for [%s]", client_ip)
            reason = f"{type(exc).__name__}: {exc}"[:200]
            results = AuthResults(
                spf=SpfResult("temperror", sender.rpartition("@")[2], "mfrom", reason), dkim=(),
                dmarc=DmarcResult("temperror", reason=reason), arc=ArcResult("none"),
                client_ip=client_ip, sender=sender, helo=helo, lookups=budget.count)
        if self.record is not None and results.dmarc.record is not None:
            try:
                self.record(results)
            except Exception:
                log.exception("recording a DMARC evaluation failed")
        return results

    def _check(self, message: bytes, budget: Budget, *, client_ip: str, sender: str, helo: str,
               settings: Settings) -> AuthResults:
        spf = check_spf(budget, client_ip=client_ip, sender=sender, helo=helo)
        dkim = verify_dkim(message, budget, max_signatures=settings.max_signatures,
                           minkey=settings.min_key_bits)
        arc = verify_arc(message, budget, minkey=settings.min_key_bits) if settings.arc \
            else ArcResult("none")
        dmarc = evaluate(budget, headers=_headers(message), spf=spf, dkim=dkim, orgs=self.orgs,
                         sample=self.sample)
        if dmarc.result == "fail" and (spf.result == "temperror"
                                       or any(d.result == "temperror" for d in dkim)):
            # An identifier that could not be checked might have passed (§6.6.2): not a failure.
            dmarc = dataclasses.replace(dmarc, result="temperror", disposition="none",
                                        reason="SPF or DKIM temporary error")
        return AuthResults(spf=spf, dkim=tuple(dkim), dmarc=dmarc, arc=arc, client_ip=client_ip,
                           sender=sender, helo=helo, lookups=budget.count)


class PolicySettings(Protocol):
    @property
    def reject(self) -> bool: ...
    @property
    def quarantine(self) -> bool: ...
    @property
    def quarantine_name(self) -> str: ...
    @property
    def temperror(self) -> str: ...
    @property
    def arc_override(self) -> bool: ...


def default_decision(results: AuthResults, settings: PolicySettings) -> Decision:
    """What the node does when no script decided (RFC 7489 §6.7 leaves it to the receiver):
    p=reject -> 550 5.7.1, p=quarantine -> the quarantine, temperror -> accept or defer."""
    dmarc = results.dmarc
    if dmarc.result == "temperror" and settings.temperror == "defer":
        return Decision("defer", "4.7.0 DMARC check temporarily failed, try again later")
    if dmarc.result != "fail":
        return Decision("accept")
    if settings.arc_override and results.arc.result == "pass":
        return Decision("accept")  # a forwarder's or list's intact ARC chain (RFC 8617 §7.2)
    if dmarc.disposition == "reject" and settings.reject:
        return Decision("reject", f"5.7.1 Email rejected per DMARC policy for {dmarc.from_domain}")
    if dmarc.disposition in ("reject", "quarantine") and settings.quarantine:
        return Decision("quarantine", quarantine=settings.quarantine_name)
    return Decision("accept")
