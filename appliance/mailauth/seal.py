"""ARC sealing (RFC 8617 §5.1) of checked inbound mail the node passes on.

With `[mailauth] arc_seal = true`, a message whose inbound checks ran here (it carries the
node's own Authentication-Results) gets an ARC set at delivery, made once like its DKIM
signature: ARC-Authentication-Results with the node's results, ARC-Message-Signature and
ARC-Seal, i= one above the chain it came with. dkimpy makes the set; cv= is the arc= result
of the inbound check (none without ARC fields, pass, fail). The key is one of the DKIM key
store's, RSA (§4.1.3 names rsa-sha256 only).

The ARC-Message-Signature does not cover DKIM-Signature fields (dkimpy never signs them), so
the node's own DKIM signature, made or not, leaves the set valid; the set goes on top of it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import dkim
from cryptography.hazmat.primitives import serialization

from appliance.config.schema import Config
from appliance.errors import InvalidInput, NotFound
from appliance.mailauth.keys import KeyStore, SigningKey, check_domain
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
    (§5.1.2: an earlier hop's cv=fail, or ARC fields without our arc= result)."""
    if key.algorithm != "rsa":
        raise SealError(f"ARC sealing needs an RSA key; {key.selector} of {key.domain} is "
                        f"{key.algorithm} (RFC 8617 section 4.1.3)")
    pem = key.key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    try:
        fields = dkim.arc_sign(message, key.selector.encode("ascii"), key.domain.encode("ascii"),
                               pem, authserv_id.encode("ascii", "replace"), timestamp=int(now),
                               logger=DKIMPY_LOG)
    except dkim.DKIMException as exc:
        raise SealError(str(exc)) from None
    except Exception as exc:  # a hostile header section dkimpy trips over
        raise SealError(f"{type(exc).__name__}: {exc}") from None
    return b"".join(fields)


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
