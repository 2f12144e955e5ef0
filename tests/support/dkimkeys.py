"""Test DKIM keys: an RSA key pair, the TXT record that publishes it, and dkimpy signing."""

from __future__ import annotations

import base64
import functools

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def rsa_key(bits: int = 1024) -> tuple[bytes, str]:
    """(private key PEM, the DKIM TXT record "v=DKIM1; k=rsa; p=..."), one per size."""
    return _key(bits)


@functools.lru_cache(maxsize=4)
def _key(bits: int) -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()


def txt_chunks(record: str) -> list[str]:
    """A long TXT record as 255-byte character-strings (RFC 7208 §3.3, RFC 6376 §3.6.2.2)."""
    return [record[i:i + 255] for i in range(0, len(record), 255)]


def sign(message: bytes, *, domain: str, selector: str = "sel", bits: int = 1024,
         headers: list[bytes] | None = None) -> bytes:
    pem, _ = rsa_key(bits)
    signature = dkim.sign(message, selector.encode(), domain.encode(), pem,
                          include_headers=headers or [b"from", b"to", b"subject", b"date"])
    return signature + message


def message(*, sender: str = "alice@example.com", subject: str = "Hello", extra: str = "") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: bob@example.net\r\nSubject: {subject}\r\n"
            f"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@example.com>\r\n{extra}"
            "\r\nHello Bob.\r\n").encode()


def arc_forwarded(content: bytes, *, domain: str = "forwarder.example", selector: str = "sel",
                  timestamp: int | None = None) -> bytes:
    """`content` as a forwarder passes it on: its Authentication-Results and its ARC set (i=1,
    cv=none) on top, made with the test key (publish `rsa_key()[1]` at SELECTOR._domainkey.DOMAIN)."""
    first = f"Authentication-Results: {domain}; spf=pass smtp.mailfrom=example.com\r\n".encode() + content
    return b"".join(dkim.arc_sign(first, selector.encode(), domain.encode(), rsa_key()[0],
                                  domain.encode(), timestamp=timestamp)) + first
