"""DMARC failure reports through a running node: mail failing DMARC from a fixture domain whose
record has ruf= is answered, and the AFRF report reaches the sink through the node's queue;
with `forensic_reports = false` no report is made."""

from __future__ import annotations

import email
import email.message
import email.policy
import itertools
import smtplib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import zeep

from tests.e2e.delivery.sink import Sink
from tests.support.dkimkeys import message
from tests.support.dnszone import Zone, served
from tests.support.node import RunningNode
from tests.support.wait import wait_until

CONFIG = '''
[[transports]]
id = "default"
nexthop = "127.0.0.1:{sink}"
starttls = "none"

[queue]
poll_interval = 0.1

[mailauth]
enabled = true
authserv_id = "{authserv}"
nameservers = ["127.0.0.1:{dns}"]
dns_timeout = 1.0
forensic_reports = {forensic}
forensic_rate = 1000
report_from = "dmarc-reports@gw.example.net"
'''

_serial = itertools.count(1)


def fixture_zone() -> Zone:
    zone = Zone()
    zone.txt("_dmarc.spoofed.example", "v=DMARC1; p=reject; ruf=mailto:ruf@spoofed.example")
    zone.txt("spoofed.example", "v=spf1 -all")
    # p=none: the failing mail is delivered, so its Authentication-Results tell which config
    # revision checked it; the reports go to another organization that agreed (RFC 7489 §7.1).
    zone.txt("_dmarc.watched.example", "v=DMARC1; p=none; fo=1; ruf=mailto:ruf@reports.example")
    zone.txt("watched.example._report._dmarc.reports.example", "v=DMARC1")
    zone.txt("watched.example", "v=spf1 -all")
    return zone


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with served(fixture_zone()) as dns_port, Sink() as sink:
        def text(*, forensic: bool, authserv: str) -> str:
            return CONFIG.format(sink=sink.port, dns=dns_port, authserv=authserv,
                                 forensic=str(forensic).lower())

        start = text(forensic=True, authserv="gw.example.net")
        with RunningNode(tmp_path_factory.mktemp("forensic"), config_text=start) as node:
            session = requests.Session()
            session.auth = ("admin", node.admin_password)
            client = zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=session))
            yield {"node": node, "sink": sink, "soap": client.service, "text": text}


def send(env: dict[str, Any], sender: str, rcpt: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", env["node"].smtp_port, timeout=30) as client:
        client.ehlo("client.example")
        client.sendmail(f"mallory@{sender}", [rcpt], message(sender=f"ceo@{sender}", subject=subject))


def reports(env: dict[str, Any], to: str) -> list[email.message.EmailMessage]:
    out = []
    for received in list(env["sink"].messages):
        if to in received.rcpt_tos:
            out.append(email.message_from_bytes(bytes(received.content), policy=email.policy.default))
    return out


def feedback(mail: email.message.EmailMessage) -> email.message.Message:
    (part,) = [p for p in mail.walk() if p.get_content_type() == "message/feedback-report"]
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package reads the part as a message of fields
        return payload[0]  # type: ignore[no-any-return]
    return email.message_from_string(str(payload))


def reported_rcpts(env: dict[str, Any], to: str) -> set[str]:
    return {v for m in reports(env, to) for v in feedback(m).get_all("Original-Rcpt-To", [])}


def test_a_rejected_spoof_is_reported_as_an_afrf(env: dict[str, Any]) -> None:
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(env, "spoofed.example", "victim@example.net", "forged")
    assert refused.value.smtp_code == 550
    (mail,) = wait_until(lambda: reports(env, "ruf@spoofed.example"), what="the failure report")
    assert mail.get_content_type() == "multipart/report"
    assert mail.get_param("report-type") == "feedback-report"
    assert mail["From"] == "dmarc-reports@gw.example.net"
    kinds = [p.get_content_type() for p in mail.iter_parts()]
    assert kinds == ["text/plain", "message/feedback-report", "text/rfc822-headers"]
    fields = feedback(mail)
    assert fields["Feedback-Type"] == "auth-failure" and fields["Version"] == "1"
    assert fields["Auth-Failure"] == "dmarc" and fields["Reported-Domain"] == "spoofed.example"
    assert fields["Original-Mail-From"] == "<mallory@spoofed.example>"
    assert fields["Original-Rcpt-To"] == "<victim@example.net>"
    assert fields["Source-IP"] == "127.0.0.1" and fields["Delivery-Result"] == "reject"
    assert fields["Authentication-Results"].startswith("gw.example.net;")
    assert "dmarc=fail" in fields["Authentication-Results"]
    headers = [p for p in mail.iter_parts() if p.get_content_type() == "text/rfc822-headers"][0]
    original = headers.get_payload(decode=True)
    assert b"Subject: forged" in original and b"Hello Bob" not in original


def _checked_by(env: dict[str, Any], authserv: str, subject: str) -> str:
    """Send failing mail until one is checked by the revision whose authserv-id is `authserv`;
    the recipient of that one."""
    def attempt() -> str:
        rcpt = f"{subject}{next(_serial)}@example.net"
        send(env, "watched.example", rcpt, subject)
        found = wait_until(lambda: [m for m in env["sink"].messages if rcpt in m.rcpt_tos],
                           what=f"delivery to {rcpt}")
        results = email.message_from_bytes(bytes(found[0].content))["Authentication-Results"]
        return rcpt if str(results).startswith(authserv + ";") else ""

    return wait_until(attempt, what=f"a message checked by {authserv}", timeout=60)


def test_with_the_switch_off_nothing_is_sent(env: dict[str, Any]) -> None:
    soap, text = env["soap"], env["text"]
    soap.configTextSet(text=text(forensic=False, authserv="gw-off.example.net"), comment="off")
    off = _checked_by(env, "gw-off.example.net", "off")
    soap.configTextSet(text=text(forensic=True, authserv="gw-on.example.net"), comment="on")
    on = _checked_by(env, "gw-on.example.net", "on")
    wait_until(lambda: f"<{on}>" in reported_rcpts(env, "ruf@reports.example"),
               what="the report of the message checked with the switch on")
    assert f"<{off}>" not in reported_rcpts(env, "ruf@reports.example")
