"""DKIM (RFC 6376) and ARC (RFC 8617) verification with dkimpy, its DNS through the seam."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable

import dkim

from appliance.mailauth.dns import Budget, DnsTempError, txt_strings

log = logging.getLogger(__name__)

# dkimpy logs every failed signature at ERROR; the result says it already.
DKIMPY_LOG = logging.getLogger(__name__ + ".dkimpy")
DKIMPY_LOG.propagate = False
DKIMPY_LOG.addHandler(logging.NullHandler())

_FIELD = re.compile(rb"^dkim-signature[ \t]*:", re.I | re.M)


@dataclasses.dataclass(frozen=True)
class DkimResult:
    """One DKIM-Signature's verdict (RFC 8601 §2.7.1)."""

    result: str  # pass, fail, neutral, temperror, permerror (none: see verify_dkim)
    domain: str = ""  # d=
    selector: str = ""  # s=
    reason: str = ""
    dnssec: bool = False


@dataclasses.dataclass(frozen=True)
class ArcResult:
    result: str  # none, pass, fail (RFC 8617 §4.4 chain validation status)
    reason: str = ""
    instances: int = 0


def dnsfunc(budget: Budget, purpose: str, found: list[bool] | None = None,
            ) -> Callable[..., bytes | None]:
    """dkimpy's `dnsfunc`: the first TXT record of a name (bytes) or None; records in `found`
    whether the name had a record at all (so a missing key is a permerror, not a failure)."""
    def get_txt(name: bytes, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace").rstrip(".")
        answer = budget.query(text, "TXT", purpose=purpose)
        records = txt_strings(answer)
        if found is not None:
            found.append(bool(records))
        return records[0] if records else None
    return get_txt


def _tags(value: bytes) -> dict[str, str]:
    """d= and s= of a signature, read leniently (the signature may be malformed)."""
    out: dict[str, str] = {}
    for part in value.split(b";"):
        key, sep, val = part.partition(b"=")
        if sep:
            out[key.strip().decode("ascii", "replace").lower()] = \
                re.sub(rb"\s+", b"", val).decode("ascii", "replace")
    return {k: out.get(k, "") for k in ("d", "s")}


def _signature_values(signer: dkim.DKIM) -> list[bytes]:
    return [v for k, v in signer.headers if k.lower() == b"dkim-signature"]


def verify_dkim(message: bytes, budget: Budget, *, max_signatures: int = 5,
                minkey: int = 1024) -> list[DkimResult]:
    """A result per DKIM-Signature (the first `max_signatures`; [] when there is none)."""
    if not _FIELD.search(message.partition(b"\r\n\r\n")[0] if b"\r\n\r\n" in message else message):
        return []
    try:
        signer = dkim.DKIM(message, logger=DKIMPY_LOG, minkey=minkey)
        values = _signature_values(signer)
    except Exception as exc:  # a message dkimpy cannot even parse
        return [DkimResult("permerror", reason=f"unparsable message: {exc}")]
    results: list[DkimResult] = []
    for index, value in enumerate(values[:max_signatures]):
        tags = _tags(value)
        found: list[bool] = []
        try:
            ok = signer.verify(idx=index, dnsfunc=dnsfunc(budget, "dkim", found))
        except DnsTempError as exc:
            results.append(DkimResult("temperror", tags["d"], tags["s"], f"key lookup: {exc}"))
            continue
        except dkim.DKIMException as exc:
            # A body that changed is a signature that did not verify (RFC 6376 §6.3), not a
            # broken one.
            word = "fail" if "body hash mismatch" in str(exc) else "permerror"
            results.append(DkimResult(word, tags["d"], tags["s"], str(exc)[:200]))
            continue
        except Exception as exc:  # anything else in a hostile signature: a clear permerror
            results.append(DkimResult("permerror", tags["d"], tags["s"],
                                      f"{type(exc).__name__}: {exc}"[:200]))
            continue
        if ok:
            results.append(DkimResult("pass", tags["d"], tags["s"], "",
                                      dnssec=budget.authenticated("dkim")))
        elif found and not found[-1]:
            results.append(DkimResult("permerror", tags["d"], tags["s"], "no key for signature"))
        else:
            results.append(DkimResult("fail", tags["d"], tags["s"], "signature did not verify"))
    return results


def verify_arc(message: bytes, budget: Budget, *, minkey: int = 1024) -> ArcResult:
    """The ARC chain's validation status ("none" without ARC header fields)."""
    if b"arc-seal" not in message[:65536].lower():
        return ArcResult("none")
    try:
        cv, data, reason = dkim.arc_verify(message, logger=DKIMPY_LOG, minkey=minkey,
                                           dnsfunc=dnsfunc(budget, "arc"))
    except DnsTempError as exc:
        return ArcResult("fail", f"temporary DNS failure: {exc}")
    except Exception as exc:
        return ArcResult("fail", f"{type(exc).__name__}: {exc}"[:200])
    status = (cv or b"fail").decode("ascii", "replace").lower()
    return ArcResult(status if status in ("none", "pass", "fail") else "fail", str(reason),
                     len(data))
