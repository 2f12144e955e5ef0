"""DKIM signatures checked by dkimpy's verifier, and which key signs which message."""

from __future__ import annotations

import re
import time
from pathlib import Path

import dkim
import pytest

from appliance.config.schema import DkimDomain, DkimSection
from appliance.mailauth.keys import KeyStore
from appliance.mailauth.sign import (
    Choice, SignError, Signer, from_domain, parse_choice, script_choice, sign_message,
)

MESSAGE = (b"Received: from x by y\r\nFrom: Alice <alice@Example.COM>\r\nTo: bob@dest.example\r\n"
           b"Subject: hello   there\r\n  folded subject\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\n"
           b"Message-ID: <1@x>\r\n\r\nBody line  \r\n.dot\r\n\r\n\r\n")


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    store = KeyStore(tmp_path / "keys" / "dkim")
    store.create("example.com", "rsa1", "rsa")
    store.create("example.com", "ed1", "ed25519")
    return store


def _dns(keys: KeyStore):  # type: ignore[no-untyped-def]
    records = {f"{i.name}.".encode(): i.txt_value().encode() for i in keys.all()}
    return lambda name, timeout=5: records.get(name)


@pytest.mark.parametrize("selector", ["rsa1", "ed1"])
@pytest.mark.parametrize("canon", ["relaxed/relaxed", "relaxed/simple", "simple/relaxed", "simple/simple"])
def test_signatures_verify_with_dkimpy(keys: KeyStore, selector: str, canon: str) -> None:
    header = sign_message(MESSAGE, keys.load("example.com", selector), headers=DkimSection().headers,
                          canonicalization=canon, now=time.time())
    signed = header + MESSAGE
    assert dkim.verify(signed, dnsfunc=_dns(keys))
    tags = dict(dkim.util.parse_tag_value(dkim.rfc822_parse(signed)[0][0][1]))
    assert tags[b"c"] == canon.encode() and tags[b"d"] == b"example.com" and tags[b"s"] == selector.encode()
    # Signed once each as present, From once more (oversigned); Received never.
    assert re.split(rb"\s*:\s*", tags[b"h"]) == [b"from", b"subject", b"date", b"message-id", b"to", b"from"]
    assert not dkim.verify(signed.replace(b"Body line", b"Body lime"), dnsfunc=_dns(keys))
    added = signed.replace(b"To: bob", b"From: mallory@evil.example\r\nTo: bob")
    assert not dkim.verify(added, dnsfunc=_dns(keys))  # the oversigned From protects against this


def test_relaxed_survives_refolding_and_simple_does_not(keys: KeyStore) -> None:
    key = keys.load("example.com", "rsa1")
    for canon, survives in (("relaxed/relaxed", True), ("simple/simple", False)):
        signed = sign_message(MESSAGE, key, headers=["from", "subject"], canonicalization=canon,
                              now=time.time()) + MESSAGE
        refolded = signed.replace(b"hello   there\r\n  folded", b"hello there folded")
        assert bool(dkim.verify(refolded, dnsfunc=_dns(keys))) is survives


def test_unsignable_messages_are_a_sign_error(keys: KeyStore) -> None:
    key = keys.load("example.com", "ed1")
    with pytest.raises(SignError, match="no From"):
        sign_message(b"To: x@y\r\n\r\nbody\r\n", key, headers=["from"], now=0)
    with pytest.raises(SignError, match="cannot be parsed"):
        sign_message(b"From: a@example.com\r\nthis is no header\r\n\r\nbody\r\n", key, headers=["from"], now=0)


def test_from_domain() -> None:
    assert from_domain([(b"From", b' "A, B" <a@Sub.Example.com>\r\n')]) == "sub.example.com"
    assert from_domain([(b"From", b" undisclosed\r\n")]) == ""
    assert from_domain([(b"To", b" a@b.c\r\n")]) == ""


def test_choices_round_trip_and_bad_values_are_ignored() -> None:
    assert parse_choice(script_choice("Example.com", "S1").text()) == Choice(domain="example.com", selector="s1")
    assert parse_choice("skip") == Choice(skip=True)
    assert parse_choice("") is None and parse_choice("../x:s1") is None and parse_choice("nocolon") is None


def _selector(signer: Signer, message: bytes, *, choice: Choice | None = None, is_dsn: bool = False,
              cfg: DkimSection = DkimSection()) -> str | None:
    header = signer.signature(message, choice=choice, is_dsn=is_dsn, cfg=cfg, now=time.time())
    if header is None:
        return None
    return dict(dkim.util.parse_tag_value(dkim.rfc822_parse(header + message)[0][0][1]))[b"s"].decode()


def test_which_key_signs(keys: KeyStore) -> None:
    signer = Signer(keys)
    oldest = keys.selectors("example.com")[0][1]
    assert _selector(signer, MESSAGE) == oldest  # default: the From domain's oldest key
    rotated = DkimSection(domains={"example.com": DkimDomain(selector="ed1")})
    assert _selector(signer, MESSAGE, cfg=rotated) == "ed1"
    assert signer.active_selector("example.com", rotated) == "ed1"
    assert _selector(signer, MESSAGE, cfg=DkimSection(enabled=False)) is None
    assert _selector(signer, MESSAGE, cfg=DkimSection(sign="script")) is None
    assert _selector(signer, MESSAGE, choice=Choice(skip=True)) is None
    assert _selector(signer, MESSAGE, choice=script_choice("example.com", "rsa1"),
                     cfg=DkimSection(sign="script")) == "rsa1"
    assert _selector(signer, MESSAGE, choice=script_choice("example.com", "gone")) is None
    assert _selector(signer, MESSAGE, is_dsn=True) is None  # the node's bounces: not by default
    assert _selector(signer, MESSAGE, is_dsn=True, cfg=DkimSection(sign_dsn=True)) == oldest
    other = MESSAGE.replace(b"alice@Example.COM", b"alice@nokey.example")
    assert _selector(signer, other) is None
    assert _selector(signer, MESSAGE.replace(b"alice@Example.COM", b"alice@../../etc")) is None


def test_config_refuses_what_must_not_be_signed() -> None:
    with pytest.raises(ValueError, match="must include from"):
        DkimSection(headers=["subject"])
    with pytest.raises(ValueError, match="received field must not be signed"):
        DkimSection(headers=["from", "Received"])
    with pytest.raises(ValueError, match="not a DKIM selector"):
        DkimSection(domains={"example.com": DkimDomain(selector="../x")})
    with pytest.raises(ValueError, match="not a domain name"):
        DkimSection(domains={"../x": DkimDomain(selector="s1")})


def test_relaxed_body_is_the_same_bytes_as_dkimpys() -> None:
    import random

    from dkim.canonicalization import Relaxed

    from appliance.mailauth.sign import canonical_relaxed_body

    rng = random.Random(15)
    cases = [b"", b"\r\n", b"\r\n\r\n", b"a", b"a \t\r\n\r\n \r\n", b"x\t y  z \r\n", b"a\r\r\n"]
    cases += [bytes(rng.choice(b" \t\rab\n") for _ in range(rng.randint(0, 24))).replace(b"\n", b"\r\n")
              for _ in range(5000)]
    for body in cases:
        assert canonical_relaxed_body(body) == Relaxed.canonicalize_body(body), body
