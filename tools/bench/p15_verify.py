"""Inbound verification cost per message: DKIM + SPF + DMARC (+ the ARC look) with a fixture
resolver behind the mail-auth Lookup Protocol (no network), µs per message, medians.

    python tools/bench/p15_verify.py [--messages 300] [--runs 5] [--bits 2048]

Rows: dkimpy's own verify() with a dict lookup (the reference: the RSA work every verifier
pays), SPF alone, DKIM alone through the seam, the whole check (Checker.check, as DATA runs
it) without and with the node's TTL cache in front of the resolver. The ratio column is each
row against the reference. Writes tools/bench/results/p15_verify.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import dkim  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from appliance.config.schema import MailAuthSection  # noqa: E402
from appliance.mailauth.check import Checker  # noqa: E402
from appliance.mailauth.dmarc import OrgDomains  # noqa: E402
from appliance.mailauth.dns import Answer, Budget, CachedLookup  # noqa: E402
from appliance.mailauth.spf import check_spf  # noqa: E402
from appliance.mailauth.verify import verify_dkim  # noqa: E402

RESULTS = ROOT / "tools" / "bench" / "results" / "p15_verify.json"


class DictLookup:
    """Internet DNS stands in: a dict of (name, type) -> records."""

    def __init__(self, records: dict[tuple[str, str], tuple[object, ...]]) -> None:
        self.records = records

    def query(self, name: str, rdtype: str, *, timeout: float | None = None) -> Answer:
        found = self.records.get((name.lower().rstrip("."), rdtype))
        return Answer(records=found or (), exists=found is not None or name.endswith("example.com"))


def setup(bits: int) -> tuple[bytes, DictLookup, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    record = f"v=DKIM1; k=rsa; p={public}".encode()
    chunks = tuple(record[i:i + 255] for i in range(0, len(record), 255))
    lookup = DictLookup({
        ("sel._domainkey.example.com", "TXT"): (chunks,),
        ("example.com", "TXT"): ((b"v=spf1 include:_spf.example.net ~all",),),
        ("_spf.example.net", "TXT"): ((b"v=spf1 ip4:198.51.100.0/24 ip4:192.0.2.0/24 -all",),),
        ("_dmarc.example.com", "TXT"): ((b"v=DMARC1; p=reject; rua=mailto:d@example.com",),),
    })
    body = ("From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: benchmark\r\n"
            "Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <b@example.com>\r\n\r\n"
            + "A line of text for the body of the message.\r\n" * 20).encode()
    signed = dkim.sign(body, b"sel", b"example.com", pem,
                       include_headers=[b"from", b"to", b"subject", b"date", b"message-id"]) + body
    return signed, lookup, record


def timed(fn: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bits", type=int, default=2048)
    args = parser.parse_args()
    signed, lookup, record = setup(args.bits)
    settings = MailAuthSection(enabled=True)
    orgs = OrgDomains()
    orgs.of("example.com")  # the public suffix list loads once per process, not per message
    plain = Checker(lookup, orgs=orgs)
    cached = Checker(CachedLookup(lookup), orgs=orgs)

    def budget() -> Budget:
        return Budget(lookup, seconds=10, per_lookup=3)

    cases: dict[str, Callable[[], object]] = {
        "dkimpy verify (reference)": lambda: dkim.verify(signed, dnsfunc=lambda n, timeout=5: record),
        "SPF (include, 2 lookups)": lambda: check_spf(budget(), client_ip="192.0.2.10",
                                                      sender="b@example.com", helo="mx.example.com"),
        "DKIM through the seam": lambda: verify_dkim(signed, budget()),
        "DKIM+SPF+DMARC (Checker.check)": lambda: plain.check(
            signed, client_ip="192.0.2.10", sender="b@example.com", helo="mx.example.com",
            settings=settings),
        "DKIM+SPF+DMARC, TTL cache": lambda: cached.check(
            signed, client_ip="192.0.2.10", sender="b@example.com", helo="mx.example.com",
            settings=settings),
    }
    outcome = plain.check(signed, client_ip="192.0.2.10", sender="b@example.com",
                          helo="mx.example.com", settings=settings)
    assert (outcome.dkim_result, outcome.spf.result, outcome.dmarc.result) == ("pass", "pass", "pass"), outcome
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, fn in cases.items():  # interleaved: noise hits every row alike
            fn()
            samples[name].append(timed(fn, args.messages))
    reference = statistics.median(samples["dkimpy verify (reference)"])
    rows = []
    print(f"{'case':34} {'µs/message (median)':>20} {'ratio':>7}")
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append({"case": name, "us_per_message": round(median, 1),
                     "ratio_to_reference": round(median / reference, 2), "runs": [round(v, 1) for v in values]})
        print(f"{name:34} {median:20.1f} {median / reference:7.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"bench": "p15_verify", "bits": args.bits, "messages": args.messages,
                                   "runs": args.runs, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
