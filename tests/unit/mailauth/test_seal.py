"""ARC sets made by the node, verified by dkimpy's ARC verifier through the node's own DNS seam
(the fixture zone serving the TXT record the key store prints); an existing chain continued;
broken chains, hostile fields and missing keys give cv=fail or no set, never an exception."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import dkim
import pytest

from appliance.config.document import parse
from appliance.config.schema import Config, MailAuthSection, NodeSection
from appliance.errors import InvalidInput
from appliance.mailauth.check import Checker
from appliance.mailauth.dmarc import OrgDomains
from appliance.mailauth.dns import Budget
from appliance.mailauth.keys import KeyStore
from appliance.mailauth.results import HEADER
from appliance.mailauth.seal import Sealer, seal_message
from appliance.mailauth.verify import dnsfunc, verify_arc
from tests.support.dkimkeys import arc_forwarded, message, rsa_key, sign, txt_chunks
from tests.support.dnszone import Zone, ZoneLookup
from tests.unit.mailauth.conftest import settings

AUTHSERV = "gw.example.net"
NOW = int(time.time())  # dkimpy refuses t= in the future


@pytest.fixture
def keys(tmp_path: Path, zone: Zone) -> KeyStore:
    store = KeyStore(tmp_path / "keys" / "dkim")
    for selector, algorithm in (("arc1", "rsa"), ("ed1", "ed25519")):
        info = store.create("example.net", selector, algorithm)
        zone.txt(info.name, txt_chunks(info.txt_value()))  # type: ignore[arg-type]
    return store


@pytest.fixture
def forwarder(zone: Zone) -> None:
    """The test key of forwarder.example, published (tests.support.dkimkeys.arc_forwarded)."""
    zone.txt("sel._domainkey.forwarder.example", txt_chunks(rsa_key()[1]))  # type: ignore[arg-type]


def config(**mailauth: object) -> Config:
    values: dict[str, object] = dict(enabled=True, authserv_id=AUTHSERV, arc_seal=True,
                                     arc_domain="example.net", arc_selector="arc1")
    values.update(mailauth)
    return Config(node=NodeSection(hostname="mx.example.net"),
                  mailauth=MailAuthSection(**values))  # type: ignore[arg-type]


def checked(zone: Zone, content: bytes) -> bytes:
    """What the node spools at DATA: its own Authentication-Results on top of the message."""
    zone.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    zone.txt("_dmarc.example.com", "v=DMARC1; p=none")
    results = Checker(ZoneLookup(zone), orgs=OrgDomains()).check(
        content, client_ip="192.0.2.7", sender="alice@example.com", helo="h", settings=settings())
    return f"{HEADER}: {results.header_value(AUTHSERV)}\r\n".encode() + content


def arc_verify(zone: Zone, sealed: bytes) -> tuple[bytes | None, list[dict[bytes, object]], str]:
    budget = Budget(ZoneLookup(zone), seconds=10.0, per_lookup=3.0)
    return dkim.arc_verify(sealed, dnsfunc=dnsfunc(budget, "arc"))  # type: ignore[no-any-return]


def tags(arc_set: bytes, name: bytes) -> dict[bytes, bytes]:
    fields, _ = dkim.rfc822_parse(arc_set + b"\r\n")
    [value] = [v for n, v in fields if n.lower() == name.lower()]
    return dict(dkim.util.parse_tag_value(value))


def test_a_checked_message_is_sealed_and_its_chain_verifies(zone: Zone, keys: KeyStore) -> None:
    spooled = checked(zone, message())
    made = Sealer(keys).seal(spooled, config=config(), now=NOW)
    assert made is not None
    names = [line.split(b":", 1)[0] for line in made.split(b"\r\n") if line and line[:1] != b" "]
    assert names == [b"ARC-Seal", b"ARC-Message-Signature", b"ARC-Authentication-Results"]
    seal = tags(made, b"ARC-Seal")
    assert (seal[b"i"], seal[b"cv"], seal[b"a"], seal[b"d"], seal[b"s"], seal[b"t"]) == \
        (b"1", b"none", b"rsa-sha256", b"example.net", b"arc1", str(NOW).encode())
    aar = dkim.rfc822_parse(made + b"\r\n")[0][2][1].decode()
    assert aar.lstrip().startswith(f"i=1; {AUTHSERV};") and "spf=pass" in aar and "dmarc=pass" in aar
    sealed = made + spooled
    cv, results, reason = arc_verify(zone, sealed)
    assert cv == b"pass", reason
    assert [r["instance"] for r in results] == [1]
    assert verify_arc(sealed, Budget(ZoneLookup(zone), seconds=10.0, per_lookup=3.0)).result == "pass"
    cv, _, _ = arc_verify(zone, sealed.replace(b"Hello Bob.", b"Hello Eve."))
    assert cv == b"fail"  # the message signature covers the body


def test_the_nodes_dkim_signature_on_top_leaves_the_set_valid(zone: Zone, keys: KeyStore) -> None:
    spooled = checked(zone, message())
    made = seal_message(spooled, keys.load("example.net", "arc1"), authserv_id=AUTHSERV, now=NOW)
    signed = sign(spooled, domain="example.com")  # a DKIM-Signature between the set and the rest
    sealed = made + signed
    assert arc_verify(zone, sealed)[0] == b"pass"


def test_an_existing_valid_set_is_continued_with_i2_and_cv_pass(
        zone: Zone, keys: KeyStore, forwarder: None) -> None:
    hop1 = arc_forwarded(message(), timestamp=NOW - 60)
    spooled = checked(zone, hop1)
    assert b"arc=pass" in spooled.split(b"\r\n\r\n")[0]  # the inbound check verified the chain
    made = Sealer(keys).seal(spooled, config=config(), now=NOW)
    assert made is not None
    seal = tags(made, b"ARC-Seal")
    assert (seal[b"i"], seal[b"cv"]) == (b"2", b"pass")
    assert tags(made, b"ARC-Message-Signature")[b"i"] == b"2"
    cv, results, reason = arc_verify(zone, made + spooled)
    assert cv == b"pass", reason
    assert sorted(r["instance"] for r in results) == [1, 2]


def test_a_broken_chain_is_sealed_with_cv_fail(zone: Zone, keys: KeyStore, forwarder: None) -> None:
    hop1 = arc_forwarded(message(), timestamp=NOW - 60)
    spooled = checked(zone, hop1.replace(b"Hello Bob.", b"Hello Eve."))  # changed after hop 1
    assert b"arc=fail" in spooled.split(b"\r\n\r\n")[0]
    made = Sealer(keys).seal(spooled, config=config(), now=NOW)
    assert made is not None
    seal = tags(made, b"ARC-Seal")
    assert (seal[b"i"], seal[b"cv"]) == (b"2", b"fail")
    assert verify_arc(made + spooled, Budget(ZoneLookup(zone), seconds=10.0,
                                             per_lookup=3.0)).result == "fail"


@pytest.mark.parametrize(("content", "words"), [
    (message(), "no results of ours"),  # the inbound checks did not run here
    # ARC fields the inbound check gave no arc= result for (the chain ended, §5.1.2)
    (b"Authentication-Results: gw.example.net; spf=pass smtp.mailfrom=example.com\r\n"
     b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x.example; s=s; b=AAAA\r\n" + message(),
     "no results of ours, or its ARC chain ended"),
    (b"Authentication-Results: gw.example.net; arc=fail; spf=pass smtp.mailfrom=example.com\r\n"
     b"ARC-Seal: i=50; cv=pass; a=rsa-sha256; d=x.example; s=s; b=AAAA\r\n" + message(),
     "not sealed: the ARC chain already has 50 sets (at most 50)"),
    (b"Authentication-Results: gw.example.net; arc=pass; spf=pass smtp.mailfrom=example.com\r\n"
     + message(), "not sealed: arc=pass but the message has no ARC set"),  # claimed, no chain
    (b"Authentication-Results: gw.example.net; spf=pass\r\n" + message().replace(b"From: ", b"X: "),
     "not sealed: the message has no From header field"),
])
def test_hostile_or_broken_input_gives_no_set_and_a_log_line(
        keys: KeyStore, caplog: pytest.LogCaptureFixture, content: bytes, words: str) -> None:
    with caplog.at_level(logging.INFO, logger="appliance.mailauth.seal"):
        assert Sealer(keys).seal(content, config=config(), now=NOW, name="m1") is None
    assert any(words in r.getMessage() and "m1" in r.getMessage() for r in caplog.records), caplog.text


def test_results_of_others_that_do_not_parse_are_left_out_of_the_set(zone: Zone, keys: KeyStore) -> None:
    spooled = checked(zone, b"Authentication-Results: other.example; spf=pass \xff\xfe\r\n" + message())
    made = seal_message(spooled, keys.load("example.net", "arc1"), authserv_id=AUTHSERV, now=NOW)
    aar = dkim.rfc822_parse(made + b"\r\n")[0][2][1]
    assert b"other.example" not in aar and b"spf=pass" in aar
    assert arc_verify(zone, made + spooled)[0] == b"pass"


def test_missing_or_unfit_keys_are_a_clear_error_and_no_set(
        zone: Zone, keys: KeyStore, caplog: pytest.LogCaptureFixture) -> None:
    sealer = Sealer(keys)
    spooled = checked(zone, message())
    sealer.check(config())
    sealer.check(config(arc_seal=False, arc_selector="gone"))  # off: nothing to check
    for bad, words in ((config(arc_selector="gone"), "no DKIM key gone for example.net"),
                       (config(arc_selector="ed1"), "ARC needs an RSA key"),
                       (config(arc_domain=""), "no DKIM key arc1 for mx.example.net")):
        with pytest.raises(InvalidInput, match=words):
            sealer.check(bad)
        with caplog.at_level(logging.WARNING, logger="appliance.mailauth.seal"):
            assert sealer.seal(spooled, config=bad, now=NOW) is None
        assert words in caplog.text


def test_config_keys_are_validated() -> None:
    section = parse('[mailauth]\narc_seal = true\narc_domain = "Example.NET"\narc_selector = "ARC1"\n').mailauth
    assert (section.arc_seal, section.arc_domain, section.arc_selector) == (True, "example.net", "arc1")
    assert MailAuthSection().arc_seal is False
    for text, words in (("arc_seal = true\n", "arc_seal needs arc_selector"),
                        ('arc_domain = "../keys"\n', "arc_domain"),
                        ('arc_selector = "a/b"\n', "arc_selector")):
        with pytest.raises(ValueError, match=words):
            parse("[mailauth]\n" + text)


def test_only_checked_messages_may_be_sealed() -> None:
    checked_meta = {"spf": "pass", "dkim": "none", "dmarc": "pass"}
    assert Sealer.may_seal(checked_meta, config())
    assert not Sealer.may_seal({"dkim_sign": "skip"}, config())  # e.g. the node's own mail
    assert not Sealer.may_seal(checked_meta, config(arc_seal=False))
