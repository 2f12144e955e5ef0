"""DKIM and ARC verification through the seam, and hostile signatures."""

from __future__ import annotations

from appliance.mailauth.dns import Budget
from appliance.mailauth.verify import verify_arc, verify_dkim
from tests.support.dkimkeys import message, rsa_key, sign, txt_chunks
from tests.support.dnszone import Zone


def publish(zone: Zone, domain: str = "example.com", selector: str = "sel") -> None:
    zone.txt(f"{selector}._domainkey.{domain}", txt_chunks(rsa_key()[1]))  # type: ignore[arg-type]


def test_a_signed_message_passes(zone: Zone, budget: Budget) -> None:
    publish(zone)
    results = verify_dkim(sign(message(), domain="example.com"), budget)
    assert [(r.result, r.domain, r.selector) for r in results] == [("pass", "example.com", "sel")]


def test_a_changed_body_fails(zone: Zone, budget: Budget) -> None:
    publish(zone)
    signed = sign(message(), domain="example.com").replace(b"Hello Bob.", b"Hello Eve.")
    assert [r.result for r in verify_dkim(signed, budget)] == ["fail"]


def test_no_signature_no_result(budget: Budget) -> None:
    assert verify_dkim(message(), budget) == []


def test_missing_key_is_a_permerror(zone: Zone, budget: Budget) -> None:
    results = verify_dkim(sign(message(), domain="example.com"), budget)
    assert [r.result for r in results] == ["permerror"]
    assert "key" in results[0].reason


def test_key_lookup_timeout_is_a_temperror(zone: Zone, budget: Budget) -> None:
    zone.timeouts.add("sel._domainkey.example.com")
    results = verify_dkim(sign(message(), domain="example.com"), budget)
    assert [r.result for r in results] == ["temperror"]


def test_malformed_signatures_are_permerrors(zone: Zone, budget: Budget) -> None:
    publish(zone)
    bad = [
        b"DKIM-Signature: this is not a tag list\r\n",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=; b=\r\n",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=%%%; b=%%%\r\n",
        b"DKIM-Signature: v=1; a=unknown; d=example.com; s=sel; h=from; bh=AA==; b=AA==\r\n",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=AA==; b=AA==; l=-5\r\n",
        b"DKIM-Signature: v=1; d=\xff\xfe; s=\x00; h=from\r\n",
    ]
    for header in bad:
        results = verify_dkim(header + message(), budget)
        assert len(results) == 1 and results[0].result in ("permerror", "fail"), (header, results)


def test_a_huge_h_list_gets_a_clear_result(zone: Zone, budget: Budget) -> None:
    publish(zone)
    signed = sign(message(), domain="example.com")
    huge = b":".join([b"from"] * 50_000)
    head, _, rest = signed.partition(b"h=")
    tampered = head + b"h=" + huge + b":" + rest
    results = verify_dkim(tampered, budget)
    assert len(results) == 1 and results[0].result in ("fail", "permerror")


def test_only_max_signatures_are_verified(zone: Zone, budget: Budget) -> None:
    publish(zone)
    signed = message()
    for _ in range(8):
        signed = sign(signed, domain="example.com")
    assert len(verify_dkim(signed, budget, max_signatures=3)) == 3


def test_arc_none_without_arc_fields(budget: Budget) -> None:
    assert verify_arc(message(), budget).result == "none"


def test_a_sealed_chain_passes(zone: Zone, budget: Budget) -> None:
    import dkim

    publish(zone, "forwarder.example")
    pem, _ = rsa_key()
    original = message()
    msg = b"Authentication-Results: forwarder.example; spf=pass smtp.mailfrom=example.com\r\n" + original
    seal = dkim.arc_sign(msg, b"sel", b"forwarder.example", pem, b"forwarder.example",
                         include_headers=[b"from", b"to", b"subject"])
    sealed = b"".join(seal) + msg
    assert verify_arc(sealed, budget).result == "pass"
    assert verify_arc(sealed.replace(b"Hello Bob.", b"Hello Eve."), budget).result == "fail"
