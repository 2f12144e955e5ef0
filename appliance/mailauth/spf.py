"""SPF (RFC 7208) with pyspf, its DNS through the mail-auth seam."""

from __future__ import annotations

import dataclasses
from typing import Any

import spf as pyspf

from appliance.mailauth.dns import Budget, DnsTempError

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")


@dataclasses.dataclass(frozen=True)
class SpfResult:
    result: str  # one of RESULTS
    domain: str  # the domain checked (MAIL FROM's, or HELO's for the null sender)
    scope: str  # "mfrom" or "helo" (RFC 7489 Appendix C, SPFDomainScope)
    reason: str = ""
    dnssec: bool = False


def _valid_name(name: str) -> bool:
    return all(0 < len(label) < 64 for label in name.split("."))


class _Query(pyspf.query):  # type: ignore[misc]
    """pyspf's evaluation with its one DNS method replaced: lookups go through the Budget, and
    the void-lookup limit (RFC 7208 §4.6.4) is kept as pyspf keeps it."""

    budget: Budget

    def dns(self, name: Any, qtype: str, cnames: Any = None, ignore_void: bool = False) -> list[Any]:
        if not name:
            raise pyspf.PermError("Invalid query")
        name = str(name).rstrip(".").lower()
        if not _valid_name(name):
            return []
        cached = self.cache.get((name, qtype))
        if cached:
            return list(cached)
        try:
            answer = self.budget.query(name, qtype, purpose="spf")
        except DnsTempError as exc:
            raise pyspf.TempError(f"DNS {exc}") from exc
        if qtype in ("TXT", "SPF"):
            result: list[Any] = [list(r) for r in answer.records]
        else:
            result = list(answer.records)
        self.cache[(name, qtype)] = result
        if not result and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > pyspf.MAX_VOID_LOOKUPS:
                raise pyspf.PermError(f"Void lookup limit of {pyspf.MAX_VOID_LOOKUPS} exceeded")
        return result


def check_spf(budget: Budget, *, client_ip: str, sender: str, helo: str) -> SpfResult:
    """The SPF result for MAIL FROM `sender` (RFC 7208 §2.4), or for the HELO identity when
    the reverse-path is null."""
    domain = sender.rpartition("@")[2].lower() if sender else helo.lower()
    scope = "mfrom" if sender else "helo"
    if not domain or not client_ip:
        return SpfResult("none", domain, scope, "no identity to check")
    query = _Query(i=client_ip, s=sender, h=helo, receiver="appliance", timeout=budget.per_lookup)
    query.budget = budget
    try:
        result, _code, explanation = query.check()
    except Exception as exc:  # pyspf raises for some malformed input itself
        return SpfResult("permerror", domain, scope, f"{type(exc).__name__}: {exc}")
    result = {"error": "temperror", "unknown": "permerror", "ambiguous": "permerror"}.get(result, result)
    if result not in RESULTS:
        result = "permerror"
    return SpfResult(result, domain, scope, str(explanation or ""),
                     dnssec=budget.authenticated("spf"))
