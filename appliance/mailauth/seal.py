"""ARC sealing (RFC 8617 §5.1) of checked inbound mail the node passes on.

With `[mailauth] arc_seal = true`, a message whose inbound checks ran here (it carries the
node's own Authentication-Results) gets an ARC set at delivery, made once like its DKIM
signature: ARC-Authentication-Results with the node's results, ARC-Message-Signature and
ARC-Seal, i= one above the chain it came with; cv= is the arc= result of the inbound check
(none without ARC fields, pass, fail). The key is one of the DKIM key store's, RSA (§4.1.3
names rsa-sha256 only).

The ARC-Message-Signature does not cover DKIM-Signature fields (not among the fields dkimpy
picks to sign), so the node's own DKIM signature, made or not, leaves the set valid; the set
goes on top of it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from typing import Any

import authres
import dkim
from dkim.canonicalization import CanonicalizationPolicy

from appliance.config.schema import Config
from appliance.errors import InvalidInput, NotFound
from appliance.mailauth.keys import KeyStore, SigningKey, check_domain
from appliance.mailauth.sign import body_hash, hash_input, parse, signature_field
from appliance.mailauth.verify import DKIMPY_LOG

log = logging.getLogger(__name__)

SEAL_KEY = "arc_seal"  # metadata holding the message's ARC set, once made
# The set is kept as metadata, whose (key, value) index PostgreSQL bounds at 2704 bytes a row;
# a 2048-bit key's set is about 1.2 kB, more with long results.
MAX_SET = 2400
_CHECKED = ("spf", "dmarc")  # metadata the inbound checks always set (AuthResults.metadata)


class SealError(ValueError):
    """The message cannot be sealed (a broken chain dkimpy refuses, an unusable key)."""


def seal_message(message: bytes, key: SigningKey, *, authserv_id: str, now: float) -> bytes:
    """The ARC set (three fields, each ending in CRLF) to put on top of `message`; b"" when
    the message has no Authentication-Results of `authserv_id` or its chain ended before
    (§5.1.2: ARC fields without our arc= result).

    dkimpy reads the message's chain and picks the fields to sign (what its verifier reads
    back); the signatures are made as the DKIM signer makes them (OpenSSL's RSA: dkimpy's own
    costs about 12 ms a signature, and a set has two)."""
    if key.algorithm != "rsa":
        raise SealError(f"ARC sealing needs an RSA key; {key.selector} of {key.domain} is "
                        f"{key.algorithm} (RFC 8617 section 4.1.3)")
    try:
        fields, body = parse(message)
        chain = dkim.ARC(message, logger=DKIMPY_LOG)
        chain.add_should_not((b"Authentication-Results",))
        results = _our_results(fields, authserv_id)
        if not results:
            return b""
        cv = _chain_validation(results)
        highest, earlier = chain.sorted_arc_headers()
        include = [h.lower() for h in chain.default_sign_headers()]
    except SealError:
        raise
    except Exception as exc:  # a hostile header section the parsers trip over
        raise SealError(f"{type(exc).__name__}: {exc}") from None
    instance = highest + 1 if earlier else 1
    if instance > MAX_INSTANCE:
        raise SealError(f"the ARC chain already has {highest} sets (at most {MAX_INSTANCE})")
    if instance == 1 and cv != b"none":
        raise SealError(f"arc={cv.decode()} but the message has no ARC set")
    if instance > 1 and cv == b"none":
        return b""  # a chain we did not validate: it ends here
    if b"from" not in include:
        raise SealError("the message has no From header field")
    i = str(instance).encode("ascii")
    stamp = str(int(now)).encode("ascii")
    domain, selector = key.domain.encode("ascii"), key.selector.encode("ascii")
    aar = _AAR + b": i=" + i + b"; " + authserv_id.encode("ascii", "replace") + b"".join(
        b";\r\n " + str(result).encode("utf-8") for result in results) + b"\r\n"
    ams = signature_field(_AMS, [
        (b"i", i), (b"a", b"rsa-sha256"), (b"c", b"relaxed/relaxed"), (b"d", domain),
        (b"s", selector), (b"t", stamp), (b"h", b" : ".join(include)), (b"bh", body_hash(body)),
    ], key, lambda value: hash_input(_RELAXED, dkim.select_headers(fields, include), (_AMS, value)))
    # §5.1.1: the seal signs every set of the chain in order, this one last (cv=fail: only it).
    # Set by set, each AAR, AMS, AS (their names sort so); dkimpy lists the newest first.
    chain_fields = [] if cv == b"fail" else [
        field for _i, field in sorted(earlier, key=lambda item: (item[0], item[1][0].lower()))]
    chain_fields += [_field(aar), _field(ams)]
    seal = signature_field(_AS, [
        (b"i", i), (b"cv", cv), (b"a", b"rsa-sha256"), (b"d", domain), (b"s", selector),
        (b"t", stamp),
    ], key, lambda value: hash_input(_RELAXED, chain_fields, (_AS, value)))
    return seal + ams + aar


MAX_INSTANCE = 50  # RFC 8617 §4.2.1
_AAR, _AMS, _AS = b"ARC-Authentication-Results", b"ARC-Message-Signature", b"ARC-Seal"
_RELAXED = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")


def _field(raw: bytes) -> tuple[bytes, bytes]:
    name, _, value = raw.partition(b":")
    return name, value


def _our_results(fields: list[tuple[bytes, bytes]], authserv_id: str) -> list[Any]:
    """The results of every Authentication-Results field of `authserv_id` (§5.1.1: they go
    into the AAR); fields that do not parse are someone else's and skipped."""
    out: list[Any] = []
    for name, value in fields:
        if name.lower() != b"authentication-results":
            continue
        try:
            header = authres.AuthenticationResultsHeader.parse(
                "Authentication-Results: " + value.strip().decode("utf-8"))
        except (authres.core.SyntaxError, UnicodeDecodeError):
            continue
        if header.authserv_id == authserv_id:
            out += header.results
    return out


def _chain_validation(results: list[Any]) -> bytes:
    """cv= of the new set: the arc= result of our inbound check (none without one; two of
    them cannot be told apart: fail)."""
    arc = [r for r in results if r.method == "arc"]
    if not arc:
        return b"none"
    if len(arc) > 1:
        return b"fail"
    value = str(arc[0].result).lower()
    return value.encode("ascii") if value in ("pass", "fail", "none") else b"fail"


class Sealer:
    """Decides whether a message is sealed and makes its ARC set (see the module docstring)."""

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    @staticmethod
    def key_name(config: Config) -> tuple[str, str]:
        section = config.mailauth
        return section.arc_domain or config.node.hostname, section.arc_selector

    def load(self, config: Config) -> SigningKey:
        """The sealing key; InvalidInput (or NotFound) naming what is wrong with it."""
        domain, selector = self.key_name(config)
        try:
            key = self.keys.load(check_domain(domain), selector)
        except InvalidInput as exc:
            raise InvalidInput(f"[mailauth] arc_seal: {exc}") from None
        except NotFound as exc:
            raise NotFound(f"[mailauth] arc_seal: {exc} (`appliance dkim keygen {domain} "
                           f"{selector}`)") from None
        if key.algorithm != "rsa":
            raise InvalidInput(f"[mailauth] arc_seal: the key {selector} of {domain} is "
                               f"{key.algorithm}; ARC needs an RSA key (RFC 8617 section 4.1.3)")
        return key

    def check(self, config: Config) -> None:
        """Raise InvalidInput when `config` seals with a key this node lacks (a revision is
        refused for it)."""
        if config.mailauth.arc_seal:
            try:
                self.load(config)
            except NotFound as exc:
                raise InvalidInput(str(exc)) from None

    @staticmethod
    def may_seal(metadata: Mapping[str, str], config: Config) -> bool:
        """Whether a message would be sealed, without reading it: sealing is on and the
        inbound checks ran (their metadata is there; the body's results decide)."""
        return config.mailauth.arc_seal and all(k in metadata for k in _CHECKED)

    def seal(self, message: bytes, *, config: Config, now: float, name: str = "") -> bytes | None:
        """The ARC set of `message`, or None (logged) when it is not sealed. Never raises."""
        try:
            key = self.load(config)
            made = seal_message(message, key, authserv_id=config.authserv_id(), now=now)
        except (InvalidInput, NotFound, SealError) as exc:
            log.warning("arc: %s not sealed: %s", name or "a message", exc)
            return None
        if not made:
            log.info("arc: %s not sealed: no results of ours, or its ARC chain ended earlier",
                     name or "a message")
            return None
        if len(made) > MAX_SET:
            log.warning("arc: %s not sealed: its ARC set is %d bytes, more than the %d kept",
                        name or "a message", len(made), MAX_SET)
            return None
        return made
