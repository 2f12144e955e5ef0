"""DMARC aggregate reports: evaluations recorded, one report per domain and period, valid
against RFC 7489's schema, gzipped, queued to authorised rua= addresses only (§7.1)."""

from __future__ import annotations

import email
import email.policy
import gzip
from importlib import resources

from lxml import etree
from sqlalchemy import select

from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.mailauth.check import Checker
from appliance.mailauth.dmarc import OrgDomains
from appliance.mailauth.reports import EvaluationRecorder, ReportSettings, pending, send_reports
from appliance.queue.spool import Spool
from tests.support.dkimkeys import message, rsa_key, sign, txt_chunks
from tests.support.dnszone import Zone, ZoneLookup
from tests.unit.mailauth.conftest import settings

DAY = 86400.0
T0 = 1_800_000_000.0 - (1_800_000_000.0 % DAY)  # the start of a UTC day


def schema() -> etree.XMLSchema:
    text = resources.files("appliance.mailauth").joinpath("dmarc-rua.xsd").read_bytes()
    return etree.XMLSchema(etree.fromstring(text))


def zone() -> Zone:
    z = Zone()
    z.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    z.txt("sel._domainkey.example.com", txt_chunks(rsa_key()[1]))  # type: ignore[arg-type]
    z.txt("_dmarc.example.com", "v=DMARC1; p=quarantine; pct=50; "
                                "rua=mailto:agg@example.com,mailto:vendor@reports.example,"
                                "mailto:stranger@elsewhere.example")
    z.txt("example.com._report._dmarc.reports.example", "v=DMARC1")
    z.txt("_dmarc.example.org", "v=DMARC1; p=none; rua=mailto:dmarc@example.org")
    return z


def record_some(store: Store, z: Zone, clock: list[float]) -> None:
    recorder = EvaluationRecorder(store, clock=lambda: clock[0])
    checker = Checker(ZoneLookup(z), orgs=OrgDomains(), record=recorder, sample=lambda: 0.9)
    signed = sign(message(), domain="example.com")
    for ip in ("192.0.2.10", "192.0.2.10", "198.51.100.7", "2001:db8::25"):
        checker.check(signed, client_ip=ip, sender="b@example.com", helo="h", settings=settings())
    checker.check(message(sender="x@example.org"), client_ip="198.51.100.7", sender="x@example.org",
                  helo="h", settings=settings())
    checker.check(message(sender="x@nodmarc.example"), client_ip="198.51.100.7",
                  sender="x@nodmarc.example", helo="h", settings=settings())
    assert recorder.tick() == 5  # the message without a DMARC record is not recorded


def test_aggregate_report_is_valid_and_goes_to_authorised_addresses(store: Store, spool: Spool) -> None:
    z = zone()
    clock = [T0 + 3600]
    record_some(store, z, clock)
    assert pending(store) == 5
    report_settings = ReportSettings(org_name="gw.example.net", sender="dmarc@gw.example.net",
                                     hostname="gw.example.net", interval=DAY, max_records=1000)
    early = send_reports(store, spool, ZoneLookup(z), settings=report_settings, now=T0 + 7200)
    assert (early.reports, pending(store)) == (0, 5)  # the day is not over

    run = send_reports(store, spool, ZoneLookup(z), settings=report_settings, now=T0 + DAY + 60)
    assert run.reports == 2
    assert ("example.com", "stranger@elsewhere.example") in run.refused
    assert pending(store) == 0
    with store.transaction(read_only=True) as session:
        entries = list(session.scalars(select(QueueEntry).order_by(QueueEntry.rcpt)))
    assert sorted(e.rcpt for e in entries) == ["agg@example.com", "dmarc@example.org",
                                               "vendor@reports.example"]
    xsd = schema()
    for entry in entries:
        mail = email.message_from_bytes(spool.read(entry.path), policy=email.policy.default)
        assert mail["Subject"].startswith("Report Domain: ")
        (part,) = [p for p in mail.iter_attachments()]
        assert part.get_content_type() == "application/gzip"
        name = part.get_filename()
        xml = gzip.decompress(part.get_content())
        doc = etree.fromstring(xml)
        assert xsd.validate(doc), xsd.error_log
        ns = {"d": "http://dmarc.org/dmarc-xml/0.1"}
        domain = doc.findtext("d:policy_published/d:domain", namespaces=ns)
        assert name == f"gw.example.net!{domain}!{int(T0)}!{int(T0 + DAY - 1)}.xml.gz"
        counts = {r.findtext("d:row/d:source_ip", namespaces=ns): int(r.findtext("d:row/d:count", namespaces=ns))
                  for r in doc.findall("d:record", ns)}
        if domain == "example.com":
            assert counts == {"192.0.2.10": 2, "198.51.100.7": 1,
                              "2001:0db8:0000:0000:0000:0000:0000:0025": 1}
            assert doc.findtext("d:policy_published/d:pct", namespaces=ns) == "50"
        else:
            assert counts == {"198.51.100.7": 1}
            dispositions = doc.xpath("//d:policy_evaluated/d:disposition/text()", namespaces=ns)
            assert dispositions == ["none"]


def test_schema_refuses_a_broken_report() -> None:
    bad = etree.fromstring(b'<feedback xmlns="http://dmarc.org/dmarc-xml/0.1"><version>1</version></feedback>')
    assert not schema().validate(bad)


def test_a_dns_failure_keeps_the_rows_for_the_next_run(store: Store, spool: Spool) -> None:
    z = zone()
    record_some(store, z, [T0 + 10])
    z.timeouts.add("example.com._report._dmarc.reports.example")
    report_settings = ReportSettings(org_name="gw", sender="d@gw.example.net", hostname="gw.example.net",
                                     interval=DAY, max_records=1000)
    run = send_reports(store, spool, ZoneLookup(z), settings=report_settings, now=T0 + DAY + 1)
    assert run.reports == 1  # example.org's went; example.com's waits
    assert pending(store, ["example.com"]) == 4
    z.timeouts.clear()
    run = send_reports(store, spool, ZoneLookup(z), settings=report_settings, now=T0 + DAY + 2)
    assert run.reports == 1 and pending(store) == 0
