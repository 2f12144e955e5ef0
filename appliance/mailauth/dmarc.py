"""DMARC (RFC 7489): the record, its discovery, identifier alignment and the policy to apply."""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import random
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from appliance.mailauth.dns import Budget, DnsTempError, txt_strings

if TYPE_CHECKING:
    from appliance.mailauth.spf import SpfResult
    from appliance.mailauth.verify import DkimResult

DISPOSITIONS = ("none", "quarantine", "reject")
_LESS_STRICT = {"reject": "quarantine", "quarantine": "none", "none": "none"}


class OrgDomains:
    """Organizational domains (RFC 7489 §3.2) from the public suffix list shipped with
    publicsuffixlist (no network), loaded on first use."""

    @functools.cached_property
    def _psl(self) -> object:
        from publicsuffixlist import PublicSuffixList

        return PublicSuffixList()

    @functools.lru_cache(maxsize=4096)
    def of(self, domain: str) -> str:
        domain = domain.lower().rstrip(".")
        found = self._psl.privatesuffix(domain)  # type: ignore[attr-defined]
        return str(found) if found else domain


@dataclasses.dataclass(frozen=True)
class ReportUri:
    address: str  # the mailto: address
    limit: int = 0  # the !size suffix in bytes (0 = no limit), RFC 7489 §6.4


@dataclasses.dataclass(frozen=True)
class DmarcRecord:
    p: str
    sp: str
    pct: int = 100
    adkim: str = "r"
    aspf: str = "r"
    fo: str = "0"
    rua: tuple[ReportUri, ...] = ()
    ruf: tuple[ReportUri, ...] = ()
    ri: int = 86400


class RecordError(ValueError):
    """A TXT record that starts v=DMARC1 but cannot be used."""


_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _uris(text: str) -> tuple[ReportUri, ...]:
    out: list[ReportUri] = []
    for item in (t.strip() for t in text.split(",")):
        match = re.fullmatch(r"(?i)mailto:([^!\s]+@[^!\s]+)(?:!(\d+)([kmgt]?))?", item)
        if match:  # other URI schemes are ignored (§6.3: only mailto is defined)
            size = int(match.group(2)) * _UNITS[(match.group(3) or "").lower()] if match.group(2) else 0
            out.append(ReportUri(email.utils.unquote(match.group(1)), size))
    return tuple(out)


def parse_record(text: str) -> DmarcRecord:
    """A DMARC record's tags (§6.3); RecordError if it is not usable."""
    tags: dict[str, str] = {}
    for index, part in enumerate(p for p in text.split(";") if p.strip()):
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if index == 0 and (key != "v" or value != "DMARC1"):
            raise RecordError("not a DMARC1 record")
        if not sep:
            raise RecordError(f"tag without a value: {part.strip()!r}")
        tags.setdefault(key, value)
    rua = _uris(tags.get("rua", ""))
    p = tags.get("p", "").lower()
    if p not in DISPOSITIONS:
        # §6.6.3 step 6: a record with a bad or missing p= but a valid rua= is p=none.
        if rua:
            p = "none"
        else:
            raise RecordError(f"bad policy p={p!r}")
    sp = tags.get("sp", p).lower()
    if sp not in DISPOSITIONS:
        sp = p
    try:
        pct = min(100, max(0, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100
    try:
        ri = max(3600, int(tags.get("ri", "86400")))
    except ValueError:
        ri = 86400
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    return DmarcRecord(p=p, sp=sp, pct=pct, adkim=adkim if adkim in "rs" else "r",
                       aspf=aspf if aspf in "rs" else "r", fo=tags.get("fo", "0") or "0",
                       rua=rua, ruf=_uris(tags.get("ruf", "")), ri=ri)


@dataclasses.dataclass(frozen=True)
class DmarcResult:
    result: str  # pass, fail, none, temperror, permerror
    from_domain: str = ""
    policy_domain: str = ""  # where the record was found
    org_domain: str = ""
    record: DmarcRecord | None = None
    policy: str = "none"  # p= or sp=, whichever applies to from_domain
    disposition: str = "none"  # what the policy asks for this message after pct
    sampled_out: bool = False
    spf_aligned: bool = False
    dkim_aligned: bool = False
    reason: str = ""
    dnssec: bool = False


def from_domain(headers: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """(domain, problem) of the RFC5322.From field: one field with one address (§6.6.1)."""
    values = [v for k, v in headers if k.lower() == "from"]
    if len(values) != 1:
        return "", f"{len(values)} From fields"
    addresses = email.utils.getaddresses([values[0]])
    if len(addresses) != 1 or "@" not in addresses[0][1]:
        return "", "From field is not one address"
    domain = addresses[0][1].rpartition("@")[2].strip().lower().rstrip(".")
    if not re.fullmatch(r"[a-z0-9_-]+(\.[a-z0-9_-]+)+", domain):
        return "", f"From domain {domain!r} is not a domain name"
    return domain, ""


def aligned(a: str, b: str, mode: str, orgs: OrgDomains) -> bool:
    """Identifier alignment (§3.1): strict = the same name, relaxed = the same org domain."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if not a or not b:
        return False
    return a == b if mode == "s" else orgs.of(a) == orgs.of(b)


def discover(budget: Budget, domain: str, orgs: OrgDomains,
             ) -> tuple[DmarcRecord | None, str, str]:
    """(record, where found, problem) by §6.6.3: _dmarc.FROM, then _dmarc.ORG. DnsTempError
    propagates; a name with several DMARC records has none (step 5)."""
    names = [domain]
    org = orgs.of(domain)
    if org != domain:
        names.append(org)
    problem = ""
    for name in names:
        answer = budget.query(f"_dmarc.{name}", "TXT", purpose="dmarc")
        texts = [t.decode("utf-8", "replace") for t in txt_strings(answer)]
        candidates = [t for t in texts if re.match(r"(?i)^\s*v\s*=\s*DMARC1\s*(;|$)", t)]
        if len(candidates) > 1:
            problem = f"several DMARC records at _dmarc.{name}"
            continue
        if candidates:
            try:
                return parse_record(candidates[0]), name, ""
            except RecordError as exc:
                problem = f"_dmarc.{name}: {exc}"
    return None, "", problem


def evaluate(budget: Budget, *, headers: Sequence[tuple[str, str]], spf: SpfResult,
             dkim: Sequence[DkimResult], orgs: OrgDomains,
             sample: Callable[[], float] = random.random) -> DmarcResult:
    """The DMARC result of a message whose SPF and DKIM results are known (§6.6)."""
    domain, problem = from_domain(headers)
    if not domain:
        return DmarcResult("permerror", reason=problem)
    org = orgs.of(domain)
    try:
        record, where, problem = discover(budget, domain, orgs)
    except DnsTempError as exc:
        return DmarcResult("temperror", from_domain=domain, org_domain=org, reason=str(exc))
    if record is None:
        return DmarcResult("none", from_domain=domain, org_domain=org, reason=problem)
    spf_ok = spf.result == "pass" and aligned(spf.domain, domain, record.aspf, orgs)
    dkim_ok = any(d.result == "pass" and aligned(d.domain, domain, record.adkim, orgs) for d in dkim)
    # §6.6.3: the sp= of an org domain's record covers its subdomains.
    policy = record.p if where == domain else record.sp
    dnssec = budget.authenticated("dmarc")
    if spf_ok or dkim_ok:
        return DmarcResult("pass", domain, where, org, record, policy, "none", False,
                           spf_ok, dkim_ok, dnssec=dnssec)
    disposition, sampled_out = policy, False
    # §6.6.4: a message outside pct% gets the next less strict policy.
    if policy != "none" and record.pct < 100 and sample() * 100 >= record.pct:
        disposition, sampled_out = _LESS_STRICT[policy], True
    return DmarcResult("fail", domain, where, org, record, policy, disposition, sampled_out,
                       False, False, reason="no aligned SPF or DKIM pass", dnssec=dnssec)
