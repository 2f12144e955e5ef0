"""One message's authentication results: the Authentication-Results field (RFC 8601), the
queue entry's metadata, and the table the DATA stage's script sees."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import authres
import authres.arc
import authres.dmarc

from appliance.mailauth.dmarc import DmarcResult
from appliance.mailauth.spf import SpfResult
from appliance.mailauth.verify import ArcResult, DkimResult

HEADER = "Authentication-Results"
_PREFIX = HEADER + ": "


@dataclasses.dataclass(frozen=True)
class AuthResults:
    spf: SpfResult
    dkim: tuple[DkimResult, ...]
    dmarc: DmarcResult
    arc: ArcResult
    client_ip: str = ""
    sender: str = ""
    helo: str = ""
    lookups: int = 0

    @property
    def dkim_result(self) -> str:
        """The message's DKIM word: pass if any signature passed, else the first result, none
        without signatures."""
        if not self.dkim:
            return "none"
        if any(d.result == "pass" for d in self.dkim):
            return "pass"
        return self.dkim[0].result

    def header_value(self, authserv_id: str) -> str:
        results: list[Any] = []
        for d in self.dkim:
            results.append(authres.DKIMAuthenticationResult(
                result=d.result, header_d=d.domain or None, header_s=d.selector or None,
                reason=_reason(d.reason)))
        if not self.dkim:
            results.append(authres.DKIMAuthenticationResult(result="none"))
        spf = self.spf
        if spf.scope == "mfrom":
            results.append(authres.SPFAuthenticationResult(
                result=spf.result, smtp_mailfrom=self.sender or None, reason=_reason(spf.reason)))
        else:
            results.append(authres.SPFAuthenticationResult(
                result=spf.result, smtp_helo=self.helo or None, reason=_reason(spf.reason)))
        dm = self.dmarc
        results.append(authres.dmarc.DMARCAuthenticationResult(
            result=dm.result, header_from=dm.from_domain or None,
            policy=dm.disposition if dm.record is not None else None,
            reason=_reason(dm.reason)))
        if self.arc.result != "none":
            results.append(authres.arc.ARCAuthenticationResult(
                result=self.arc.result, smtp_remote_ip=self.client_ip or None))
        text = str(authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results))
        return text[len(_PREFIX):] if text.startswith(_PREFIX) else text

    def metadata(self) -> dict[str, str]:
        """The queue entry's metadata: `dkim`, `spf`, `dmarc` (result words, HQL-searchable)
        and what identifies them."""
        out = {"dkim": self.dkim_result, "spf": self.spf.result, "dmarc": self.dmarc.result}
        passed = [d.domain for d in self.dkim if d.result == "pass" and d.domain]
        if passed:
            out["dkim_domain"] = ",".join(dict.fromkeys(passed))[:1000]
        if self.dmarc.from_domain:
            out["dmarc_domain"] = self.dmarc.from_domain
        if self.dmarc.record is not None:
            out["dmarc_policy"] = self.dmarc.disposition
        if self.arc.result != "none":
            out["arc"] = self.arc.result
        validated = [name for name, ok in (("spf", self.spf.dnssec),
                                           ("dkim", any(d.dnssec for d in self.dkim)),
                                           ("dmarc", self.dmarc.dnssec)) if ok]
        if validated:
            out["dnssec"] = ",".join(validated)
        return out

    def lua(self) -> dict[str, Any]:
        """What the DATA stage's script finds in `message.auth`."""
        dm = self.dmarc
        return {
            "spf": {"result": self.spf.result, "domain": self.spf.domain, "scope": self.spf.scope,
                    "reason": self.spf.reason, "dnssec": self.spf.dnssec},
            "dkim": {"result": self.dkim_result, "signatures": [
                {"result": d.result, "domain": d.domain, "selector": d.selector,
                 "reason": d.reason, "dnssec": d.dnssec} for d in self.dkim]},
            "dmarc": {"result": dm.result, "domain": dm.from_domain, "policy": dm.policy,
                      "disposition": dm.disposition, "sampled_out": dm.sampled_out,
                      "spf_aligned": dm.spf_aligned, "dkim_aligned": dm.dkim_aligned,
                      "org_domain": dm.org_domain, "reason": dm.reason, "dnssec": dm.dnssec,
                      "published": dm.record is not None},
            "arc": {"result": self.arc.result, "reason": self.arc.reason},
        }


def _reason(text: str) -> str | None:
    text = re.sub(r"[^\x20-\x7e]", " ", text).strip()[:200]
    return text or None


def strip_own(message: bytes, authserv_id: str) -> bytes:
    """The message without Authentication-Results fields that claim our authserv-id: an
    outsider's forgery (RFC 8601 §5)."""
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep or b"authentication-results" not in head.lower():
        return message
    lines = head.split(b"\r\n")
    fields: list[list[bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    own = authserv_id.lower().encode("ascii", "replace")
    kept = []
    for field in fields:
        name, _, value = b"\r\n".join(field).partition(b":")
        if name.strip().lower() == b"authentication-results":
            ident = re.split(rb"[\s;(]", value.strip(), maxsplit=1)[0].lower()
            if ident == own:
                continue
        kept.append(b"\r\n".join(field))
    return b"\r\n".join(kept) + sep + body
