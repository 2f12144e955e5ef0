"""DMARC failure reports into the store: §7.1 verification (the aggregate reports' code), the
ruf= size limit, the per-domain rate shared by every reporter on one store, and the reporter's
thread queueing what the DATA path handed it."""

from __future__ import annotations

import email
import email.policy
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from appliance.config.schema import MailAuthSection
from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.mailauth.check import Checker
from appliance.mailauth.dmarc import OrgDomains
from appliance.mailauth.forensic import (
    RATE_NS, Failure, ForensicReporter, failure_type, message_headers, retry_delay, send_report)
from appliance.mailauth.results import AuthResults
from appliance.queue.spool import Spool
from appliance.stats.rates import list_rates
from tests.support.dkimkeys import message
from tests.support.dnszone import Zone, ZoneLookup
from tests.support.wait import wait_until
from tests.unit.mailauth.conftest import settings

T0 = 1_800_000_000.0


def zone() -> Zone:
    z = Zone()
    z.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
    z.txt("_dmarc.example.com", "v=DMARC1; p=none; ruf=mailto:ruf@example.com,"
                                "mailto:vendor@reports.example,mailto:stranger@elsewhere.example,"
                                "mailto:tiny@example.com!1k")
    z.txt("example.com._report._dmarc.reports.example", "v=DMARC1")
    return z


def config(**section: Any) -> Any:
    values: dict[str, Any] = dict(enabled=True, forensic_reports=True, report_from="d@gw.example.net")
    values.update(section)
    return SimpleNamespace(mailauth=MailAuthSection(**values),
                           node=SimpleNamespace(hostname="gw.example.net"),
                           transports=[SimpleNamespace(id="default")])


def failing(z: Zone, *, at: float = T0) -> Failure:
    content = message(subject="spoofed")
    res: AuthResults = Checker(ZoneLookup(z), orgs=OrgDomains()).check(
        content, client_ip="198.51.100.7", sender="ceo@example.com", helo="h", settings=settings())
    assert res.dmarc.result == "fail"
    return Failure(results=res, auth_failure=failure_type(res), headers=message_headers(content),
                   recipients=("bob@example.net",), arrival=at, delivery_result="delivered",
                   authentication_results="gw.example.net; dmarc=fail", lookup=ZoneLookup(z))


def queued(store: Store) -> list[QueueEntry]:
    with store.transaction(read_only=True) as session:
        return list(session.scalars(select(QueueEntry).order_by(QueueEntry.id)))


def test_only_verified_addresses_within_their_size_get_it(store: Store, spool: Spool) -> None:
    z = zone()
    out = send_report(store, spool, failing(z), config=config(), orgs=OrgDomains(), now=T0 + 1)
    assert out.messages == 2 and not out.limited
    assert out.refused == ["stranger@elsewhere.example"]  # no _report._dmarc record (§7.1)
    assert out.too_big == ["tiny@example.com"]  # !1k
    entries = queued(store)
    assert [e.rcpt for e in entries] == ["ruf@example.com", "vendor@reports.example"]
    for entry in entries:
        assert entry.sender == "d@gw.example.net"
        mail = email.message_from_bytes(spool.read(entry.path), policy=email.policy.default)
        assert mail.get_param("report-type") == "feedback-report"
        assert mail["To"] == entry.rcpt


def test_the_domain_rate_is_shared_through_the_store(store: Store, spool: Spool) -> None:
    z = zone()
    cfg = config(forensic_rate=2, forensic_interval=3600)
    runs = [send_report(store, spool, failing(z), config=cfg, orgs=OrgDomains(), now=T0 + i)
            for i in range(4)]
    assert [r.limited for r in runs] == [False, False, True, True]
    assert len(queued(store)) == 4  # two reports, two addresses each
    with store.transaction(read_only=True) as session:
        rows = list_rates(session, RATE_NS, "example.com", offset=0, limit=10, now=T0 + 10)
    assert [r.count for r in rows] == [2]
    later = send_report(store, spool, failing(z), config=cfg, orgs=OrgDomains(), now=T0 + 3601)
    assert not later.limited and later.messages == 2


def test_the_reporter_queues_on_its_thread_and_wakes_delivery(store: Store, spool: Spool) -> None:
    z = zone()
    woken: list[int] = []
    reporter = ForensicReporter(store, spool, config=config, on_enqueued=lambda: woken.append(1),
                                clock=lambda: T0 + 5)
    reporter.start()
    try:
        assert reporter.submit(failing(z))
        wait_until(lambda: len(queued(store)) == 2, what="the reports queued")
        wait_until(lambda: woken, what="delivery woken")
    finally:
        reporter.stop()
    assert reporter.sent == 2


def test_a_dns_failure_is_retried_later_and_then_queued(store: Store, spool: Spool) -> None:
    z = zone()
    failing_name = "example.com._report._dmarc.reports.example"
    z.timeouts.add(failing_name)  # §7.1's lookup of vendor@reports.example does not answer
    now = [T0]
    reporter = ForensicReporter(store, spool, config=config, clock=lambda: now[0])
    reporter.interval = 0.05
    reporter.start()
    try:
        assert reporter.submit(failing(z))
        wait_until(lambda: reporter.retrying == 1, what="the report waiting for a retry")
        assert queued(store) == [] and reporter.dropped == 0
        with store.transaction(read_only=True) as session:  # no rate hit for what was not sent
            assert list_rates(session, RATE_NS, "example.com", offset=0, limit=10, now=T0 + 10) == []
        asked = len([q for q in z.queries if q[0] == failing_name])
        z.timeouts.discard(failing_name)  # DNS answers again
        now[0] = T0 + 59
        reporter.wake()
        assert reporter.tick() == 0 and reporter.retrying == 1  # not due yet
        assert len([q for q in z.queries if q[0] == failing_name]) == asked  # not tried yet
        now[0] = T0 + 61  # the first back-off is over
        wait_until(lambda: len(queued(store)) == 2, what="the retried report queued")
    finally:
        reporter.stop()
    assert reporter.retrying == 0 and reporter.sent == 2 and reporter.dropped == 0
    assert sorted(e.rcpt for e in queued(store)) == ["ruf@example.com", "vendor@reports.example"]


def test_a_report_dns_keeps_failing_is_dropped_after_three_attempts(
        store: Store, spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    assert [retry_delay(n) for n in (1, 2, 3)] == [60.0, 300.0, None]
    z = zone()
    z.timeouts.add("example.com._report._dmarc.reports.example")
    now = [T0]
    reporter = ForensicReporter(store, spool, config=config, clock=lambda: now[0])
    reporter.submit(failing(z))
    with caplog.at_level(logging.INFO, logger="appliance.mailauth.forensic"):
        for step in (0.0, 60.0, 300.0):
            now[0] += step
            assert reporter.tick() == 0
        assert reporter.retrying == 0 and reporter.dropped == 1
    assert "dropped" in caplog.text and "3 attempts failed" in caplog.text
    assert queued(store) == []
    with store.transaction(read_only=True) as session:
        assert list_rates(session, RATE_NS, "example.com", offset=0, limit=10, now=T0 + 10) == []


def test_retries_waiting_are_bounded(store: Store, spool: Spool,
                                     caplog: pytest.LogCaptureFixture) -> None:
    z = zone()
    z.timeouts.add("example.com._report._dmarc.reports.example")
    reporter = ForensicReporter(store, spool, config=lambda: config(forensic_rate=100),
                                clock=lambda: T0, max_retries=2)
    for i in range(3):
        assert reporter.submit(failing(z, at=T0 + i))
    with caplog.at_level(logging.INFO, logger="appliance.mailauth.forensic"):
        assert reporter.tick() == 0
    assert reporter.retrying == 2 and reporter.dropped == 1
    assert "2 reports wait for a retry already" in caplog.text
    with caplog.at_level(logging.INFO, logger="appliance.mailauth.forensic"):
        reporter.stop()  # a stop (or restart) loses what waits in memory
    assert reporter.retrying == 0 and "2 DMARC failure reports waiting" in caplog.text
