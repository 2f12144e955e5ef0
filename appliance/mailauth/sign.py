"""DKIM signatures for outbound mail (RFC 6376 section 5; ed25519-sha256, RFC 8463).

dkimpy parses the message and canonicalizes headers and body (the same code its verifier
runs); the private-key operation is OpenSSL's (cryptography), because dkimpy's pure-Python
RSA costs about 12 ms a signature against OpenSSL's 1-2 ms, which would cap delivery.

Which key signs a message: a policy script's choice (metadata `dkim_sign`: `skip` or
`DOMAIN:SELECTOR`), else, with `[dkim] sign = "from"`, the key of the From header's domain:
the selector `[dkim.domains."DOMAIN"] selector` names, or the domain's oldest key (so that a new
key for a rotation signs only once the config switches to it, after its DNS record is out).
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import hashlib
import logging
import re
from collections.abc import Callable, Sequence

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding
from dkim.canonicalization import CanonicalizationPolicy

from appliance.config.schema import DkimSection
from appliance.errors import InvalidInput, NotFound
from appliance.mailauth.keys import KeyStore, SigningKey, check_domain, check_selector

log = logging.getLogger(__name__)

CHOICE_KEY = "dkim_sign"  # metadata a script sets: "skip" or "DOMAIN:SELECTOR"
SIGNATURE_KEY = "dkim_signature"  # metadata holding the message's DKIM-Signature field, once made
SKIP = "skip"
_NAME = b"DKIM-Signature"


class SignError(ValueError):
    """The message cannot be signed (no From field, a malformed header section)."""


@dataclasses.dataclass(frozen=True)
class Choice:
    """What a script asked for: `skip`, or a key named by domain and selector."""

    skip: bool = False
    domain: str = ""
    selector: str = ""

    def text(self) -> str:
        return SKIP if self.skip else f"{self.domain}:{self.selector}"


def script_choice(domain: str, selector: str) -> Choice:
    return Choice(domain=check_domain(domain), selector=check_selector(selector))


def parse_choice(text: str) -> Choice | None:
    """The metadata value back as a Choice; None when absent or not one (then the default applies)."""
    if not text:
        return None
    if text == SKIP:
        return Choice(skip=True)
    domain, sep, selector = text.partition(":")
    try:
        return script_choice(domain, selector) if sep else None
    except InvalidInput:
        return None


def sign_message(message: bytes, key: SigningKey, *, headers: Sequence[str],
                 oversign: Sequence[str] = ("from",), canonicalization: str = "relaxed/relaxed",
                 now: float) -> bytes:
    """The DKIM-Signature header field (ending in CRLF) to put on top of `message`.

    Each of `headers` is signed as often as it occurs; each of `oversign` once more, so that
    a copy added later breaks the signature (RFC 6376 section 8.15)."""
    fields, body = parse(message)
    return _sign_parsed(fields, body, key, headers=headers, oversign=oversign,
                        canonicalization=canonicalization, now=now)


def _sign_parsed(fields: list[tuple[bytes, bytes]], body: bytes, key: SigningKey, *,
                 headers: Sequence[str], oversign: Sequence[str], canonicalization: str,
                 now: float) -> bytes:
    present: dict[bytes, int] = {}
    for name, _value in fields:
        present[name.lower()] = present.get(name.lower(), 0) + 1
    if not present.get(b"from"):
        raise SignError("the message has no From header field (RFC 6376 section 5.4)")
    wanted = [h.lower().encode("ascii") for h in headers]
    include = [h for h in dict.fromkeys(wanted) for _ in range(present.get(h, 0))]
    include += [h.lower().encode("ascii") for h in oversign]
    policy = CanonicalizationPolicy.from_c_value(canonicalization.encode("ascii"))
    relaxed_body = policy.body_algorithm.name == b"relaxed"
    canonical_body = canonical_relaxed_body(body) if relaxed_body else policy.canonicalize_body(body)
    body_hash = base64.b64encode(hashlib.sha256(canonical_body).digest())
    algorithm = b"rsa-sha256" if key.algorithm == "rsa" else b"ed25519-sha256"
    tags = [
        (b"v", b"1"), (b"a", algorithm), (b"c", policy.to_c_value()),
        (b"d", key.domain.encode("ascii")), (b"s", key.selector.encode("ascii")),
        (b"t", str(int(now)).encode("ascii")), (b"h", b" : ".join(include)), (b"bh", body_hash),
    ]
    return signature_field(_NAME, tags, key,
                           lambda value: _header_hash_input(policy, fields, include, value))


# RFC 6376 §3.4.4: WSP runs that relaxed canonicalization changes (a lone space stays).
_WSP_RUN = re.compile(rb"\t[\t ]*| [\t ]+")


def _compress(data: bytes) -> bytes:
    if b"\t" in data or b"  " in data:  # most text has neither: no regex pass at all
        return _WSP_RUN.sub(b" ", data)
    return data


def canonical_relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 relaxed body canonicalization of a CRLF body, the same bytes as
    dkimpy's, in C-speed passes: WSP runs become one space (so trailing WSP is then one space
    before CRLF), trailing empty lines go, an empty body is empty."""
    body = _compress(body).replace(b" \r\n", b"\r\n")
    if not body.endswith(b"\r\n"):
        return body + b"\r\n" if body else b""
    end = len(body)
    while end >= 4 and body[end - 4:end] == b"\r\n\r\n":
        end -= 2
    return b"" if end == 2 else body[:end]


def parse(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    head, sep, body = message.partition(b"\r\n\r\n")
    if sep and body.count(b"\n") == body.count(b"\r\n"):
        # A CRLF body (what the spool holds): only the header section goes through the parser,
        # the body is used as it is instead of being split into lines and joined again.
        message, tail = head + sep, body
    else:
        tail = None
    try:
        fields, body = dkim.rfc822_parse(message)
    except dkim.MessageFormatError as exc:
        raise SignError(f"the header section cannot be parsed: {exc}") from None
    return [(bytes(n), bytes(v)) for n, v in fields], body if tail is None else tail


def _header_hash_input(policy: CanonicalizationPolicy, fields: list[tuple[bytes, bytes]],
                       include: list[bytes], sig_value: bytes) -> bytes:
    """RFC 6376 section 3.7: the signed fields, canonicalized, then the signature field itself
    with an empty b= and without its final CRLF."""
    # Only the signed fields are canonicalized (dkimpy's own signer does every field).
    return hash_input(policy, dkim.select_headers(fields, include), (_NAME, sig_value))


def hash_input(policy: CanonicalizationPolicy, signed: Sequence[tuple[bytes, bytes]],
               signature: tuple[bytes, bytes]) -> bytes:
    """The data a signature field signs: the `signed` fields canonicalized, each with its CRLF,
    then the signature field (b= empty) without its final CRLF (RFC 6376 §3.7, RFC 8617 §5.1.1)."""
    parts: list[bytes] = []
    for name, value in policy.canonicalize_headers(list(signed)):
        parts += [name, b":", value]
    [(name, value)] = policy.canonicalize_headers([signature])
    parts += [name, b":", value.rstrip()]
    return b"".join(parts)


def signature_field(name: bytes, tags: Sequence[tuple[bytes, bytes]], key: SigningKey,
                    data_before: Callable[[bytes], bytes]) -> bytes:
    """A signature header field `name` with `tags` and b= last: `data_before(value)` gives
    the data to sign for the field's value with b= empty (b= on a line of its own, so the
    hashed form and the final one differ only in it)."""
    head = dkim.fold(b"; ".join(b"=".join(t) for t in tags) + b";", namelen=len(name)) + b"\r\n b="
    encoded = base64.b64encode(_sign(key, data_before(b" " + head + b"\r\n")))
    folded = b"\r\n  ".join(encoded[i:i + 72] for i in range(0, len(encoded), 72))
    return name + b": " + head + folded + b"\r\n"


def body_hash(body: bytes) -> bytes:
    """bh= of a body under relaxed canonicalization (SHA-256, base64)."""
    return base64.b64encode(hashlib.sha256(canonical_relaxed_body(body)).digest())


def _sign(key: SigningKey, data: bytes) -> bytes:
    if isinstance(key.key, ed25519.Ed25519PrivateKey):
        # RFC 8463 section 3: Ed25519 over the SHA-256 hash of the header data.
        return key.key.sign(hashlib.sha256(data).digest())
    return key.key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def from_domain(fields: list[tuple[bytes, bytes]]) -> str:
    """The domain of the (first) From address of parsed header fields, lower-cased; "" when
    there is none. The common forms (`Name <a@d>`, `a@d`) are read directly; anything else
    (quoted commas, comments) goes through the email package's address parser."""
    for name, value in fields:
        if name.lower() == b"from":
            text = value.decode("utf-8", "replace").replace("\r\n", "").replace("\n", "").strip()
            simple = _SIMPLE_FROM.fullmatch(text)
            if simple is not None:
                address = simple.group(1) or simple.group(2)
            else:
                addresses = email.utils.getaddresses([text])
                address = addresses[0][1] if addresses else ""
            return address.rpartition("@")[2].strip().lower() if "@" in address else ""
    return ""


# `Display Name <local@domain>` without quotes, commas or comments, or a bare `local@domain`.
_SIMPLE_FROM = re.compile(r'[^"(),<>@]*<([^"(),<>\s]+@[^"(),<>\s]+)>|([^"(),<>\s]+@[^"(),<>\s]+)')


class Signer:
    """Decides which key signs a message and makes the signature (see the module docstring)."""

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    def active_selector(self, domain: str, cfg: DkimSection) -> str:
        """The selector that signs the domain's mail now ("" when none does)."""
        configured = cfg.domains.get(domain)
        if configured is not None:
            return configured.selector if domain in self.keys.domains() else ""
        selectors = self.keys.selectors(domain)
        return selectors[0][1] if selectors else ""

    def may_sign(self, *, choice: Choice | None, is_dsn: bool, cfg: DkimSection) -> bool:
        """Whether a message could be signed at all, without reading it (cheap: cached stats)."""
        if not cfg.enabled or (choice is not None and choice.skip):
            return False
        if choice is not None:
            return True
        if is_dsn and not cfg.sign_dsn:
            return False  # the node's own bounces (RFC 3464) are signed only when configured
        return cfg.sign == "from" and bool(self.keys.domains())

    def key_for(self, fields: list[tuple[bytes, bytes]], *, choice: Choice | None,
                is_dsn: bool, cfg: DkimSection) -> SigningKey | None:
        if not self.may_sign(choice=choice, is_dsn=is_dsn, cfg=cfg):
            return None
        return self._key(fields, choice=choice, cfg=cfg)

    def _key(self, fields: list[tuple[bytes, bytes]], *, choice: Choice | None,
             cfg: DkimSection) -> SigningKey | None:
        if choice is not None:
            domain, selector = choice.domain, choice.selector
        elif cfg.sign == "from":
            try:
                domain = check_domain(from_domain(fields))
            except InvalidInput:
                return None  # no From domain, or not one a key could be named by
            selector = self.active_selector(domain, cfg)
            if not selector:
                return None
        else:
            return None
        try:
            return self.keys.load(domain, selector)
        except (NotFound, InvalidInput) as exc:
            log.warning("dkim: not signing with %s:%s: %s", domain, selector, exc)
            return None

    def signature(self, message: bytes, *, choice: Choice | None, is_dsn: bool, cfg: DkimSection,
                  now: float) -> bytes | None:
        """The DKIM-Signature field for `message`, or None when it is not to be signed.
        SignError when it should be signed but cannot be."""
        if not self.may_sign(choice=choice, is_dsn=is_dsn, cfg=cfg):
            return None
        fields, body = parse(message)
        key = self._key(fields, choice=choice, cfg=cfg)  # may_sign() said yes just now
        if key is None:
            return None
        return _sign_parsed(fields, body, key, headers=cfg.headers, oversign=cfg.oversign,
                            canonicalization=cfg.canonicalization, now=now)
