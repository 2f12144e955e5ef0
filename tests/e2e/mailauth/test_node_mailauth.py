"""Inbound mail authentication through a running node: its resolver asks a DNS server on
loopback serving the fixture zone; real SMTP in, a sink out, HQL over SOAP."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from typing import Any

import dkim
import pytest
import requests
import zeep

from tests.e2e.delivery.sink import Sink
from tests.support.dkimkeys import message, rsa_key, sign, txt_chunks
from tests.support.dnszone import Zone, served
from tests.support.node import RunningNode
from tests.support.postgres import free_port
from tests.support.wait import wait_until

SCRIPT = '''
function data(s, msg)
  local a = msg.auth
  set_metadata("seen", a.dmarc.result .. "/" .. a.spf.result .. "/" .. a.dkim.result)
  if a.dmarc.result == "fail" and a.dmarc.domain == "lenient.example" then return accept() end
  if a.dmarc.result == "pass" and msg.subject == "script-reject" then
    return reject(550, "5.7.0 refused by the script")
  end
end
'''

CONFIG = '''
[scripts]
checked = """{script}"""

[[listeners]]
id = "inbound"
port = 2525

[[listeners]]
id = "scripted"
port = {scripted}
script = "checked"

[[transports]]
id = "default"
nexthop = "127.0.0.1:{sink}"
starttls = "none"

[queue]
poll_interval = 0.1

[mailauth]
enabled = true
authserv_id = "gw.example.net"
nameservers = ["127.0.0.1:{dns}"]
dns_timeout = 1.0
timeout = 10.0
'''


def fixture_zone() -> Zone:
    zone = Zone()
    record = txt_chunks(rsa_key()[1])
    for domain in ("example.com", "reject.example", "quarantine.example", "lenient.example"):
        zone.txt(f"sel._domainkey.{domain}", record)  # type: ignore[arg-type]
    zone.txt("example.com", "v=spf1 ip4:127.0.0.0/8 -all")
    zone.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    zone.txt("_dmarc.reject.example", "v=DMARC1; p=reject")
    zone.txt("reject.example", "v=spf1 -all")
    zone.txt("_dmarc.quarantine.example", "v=DMARC1; p=quarantine")
    zone.txt("quarantine.example", "v=spf1 -all")
    zone.txt("_dmarc.lenient.example", "v=DMARC1; p=reject")
    zone.txt("lenient.example", "v=spf1 -all")
    zone.timeouts.add("slow.example")
    zone.secure.add("_dmarc.example.com")
    return zone


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    zone = fixture_zone()
    scripted = free_port()
    with served(zone) as dns_port, Sink() as sink:
        text = CONFIG.format(script=SCRIPT, scripted=scripted, sink=sink.port, dns=dns_port)
        with RunningNode(tmp_path_factory.mktemp("mailauth"), config_text=text) as node:
            session = requests.Session()
            session.auth = ("admin", node.admin_password)
            client = zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=session))
            yield {"node": node, "sink": sink, "zone": zone, "scripted": scripted, "soap": client.service}


def send(port: int, sender: str, data: bytes, rcpt: str = "bob@example.net") -> Any:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example")
        return client.sendmail(sender, [rcpt], data)


def delivered(env: dict[str, Any], rcpt: str) -> bytes:
    found = wait_until(lambda: [m for m in env["sink"].messages if rcpt in m.rcpt_tos],
                       what=f"delivery to {rcpt}")
    return bytes(found[0].content)


def hits(soap: Any, operation: str, hql: str) -> int:
    answer = getattr(soap, operation)(filter=hql, offset=0, limit=50)
    return len(answer.result.item) if answer.result else 0


def header(data: bytes, name: str) -> str:
    head = data.partition(b"\r\n\r\n")[0].decode()
    lines = head.replace("\r\n ", " ").replace("\r\n\t", " ").split("\r\n")
    return next((line.split(":", 1)[1].strip() for line in lines
                 if line.lower().startswith(name.lower() + ":")), "")


def test_signed_mail_passes_and_is_marked(env: dict[str, Any]) -> None:
    forged = b"Authentication-Results: gw.example.net; dmarc=pass header.from=example.com\r\n"
    signed = sign(message(subject="signed"), domain="example.com")
    send(env["node"].smtp_port, "alice@example.com", forged + signed, "signed@example.net")
    out = delivered(env, "signed@example.net")
    results = header(out, "Authentication-Results")
    assert results.startswith("gw.example.net;")
    for part in ("dkim=pass", "header.d=example.com", "spf=pass", "dmarc=pass"):
        assert part in results, results
    assert out.count(b"Authentication-Results: gw.example.net") == 1  # the forged one is gone
    # The node's additions above the signature leave it verifiable downstream.
    key = rsa_key()[1].encode()
    assert dkim.verify(out, dnsfunc=lambda name, timeout=5: key)
    soap = env["soap"]
    assert wait_until(lambda: hits(soap, "mailHistory", "metadata.dmarc=pass to=signed@example.net"),
                      what="history row") == 1
    assert hits(soap, "mailHistory", "metadata.dmarc=fail to=signed@example.net") == 0
    assert hits(soap, "mailHistory", "metadata.dnssec~%dmarc% to=signed@example.net") == 1


def test_p_reject_gets_a_5xx_at_data(env: dict[str, Any]) -> None:
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(env["node"].smtp_port, "mallory@reject.example",
             message(sender="ceo@reject.example", subject="forged"))
    assert refused.value.smtp_code == 550
    assert b"5.7.1" in refused.value.smtp_error and b"reject.example" in refused.value.smtp_error


def test_p_quarantine_goes_to_the_quarantine_and_is_searchable(env: dict[str, Any]) -> None:
    send(env["node"].smtp_port, "mallory@quarantine.example",
         message(sender="ceo@quarantine.example", subject="held"), "held@example.net")
    soap = env["soap"]
    found = wait_until(lambda: hits(soap, "mailQueue", "metadata.dmarc=fail to=held@example.net"),
                       what="quarantined entry")
    assert found == 1
    entry = soap.mailQueue(filter="metadata.dmarc=fail to=held@example.net", offset=0, limit=10).result.item[0]
    assert entry.msgaction == "QUARANTINE"
    assert soap.mailQueueCount(filter="metadata.dmarc_policy=quarantine") >= 1
    assert not [m for m in env["sink"].messages if "held@example.net" in m.rcpt_tos]


def test_dns_timeouts_give_temperror_and_the_message_goes_on(env: dict[str, Any]) -> None:
    send(env["node"].smtp_port, "someone@slow.example",
         message(sender="someone@slow.example", subject="slow"), "slow@example.net")
    out = delivered(env, "slow@example.net")
    results = header(out, "Authentication-Results")
    assert "spf=temperror" in results and "dmarc=temperror" in results


def test_hostile_signatures_get_a_clear_result(env: dict[str, Any]) -> None:
    signed = sign(message(subject="hostile"), domain="example.com")
    head, _, rest = signed.partition(b"h=")
    folded = b":\r\n ".join(b":".join([b"subject"] * 50) for _ in range(400))  # 20,000 names
    huge = head + b"h=" + folded + b":" + rest
    malformed = b"DKIM-Signature: v=1; d=example.com; s=sel; b=%%%\r\n" + message(subject="bad")
    send(env["node"].smtp_port, "alice@example.com", huge, "huge@example.net")
    send(env["node"].smtp_port, "alice@example.com", malformed, "malformed@example.net")
    for rcpt in ("huge@example.net", "malformed@example.net"):
        results = header(delivered(env, rcpt), "Authentication-Results")
        assert "dkim=fail" in results or "dkim=permerror" in results, results
        assert "spf=pass" in results and "dmarc=pass" in results  # SPF still aligns


def test_the_script_sees_the_results_and_decides(env: dict[str, Any]) -> None:
    port = env["scripted"]
    send(port, "mallory@lenient.example", message(sender="ceo@lenient.example", subject="lenient"),
         "lenient@example.net")
    out = delivered(env, "lenient@example.net")
    assert "dmarc=fail" in header(out, "Authentication-Results")
    soap = env["soap"]
    assert wait_until(lambda: hits(soap, "mailHistory", "metadata.seen=fail/fail/none to=lenient@example.net"),
                      what="script metadata")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(port, "alice@example.com", sign(message(subject="script-reject"), domain="example.com"))
    assert b"refused by the script" in refused.value.smtp_error
    # No decision from the script: the default policy still rejects p=reject.
    with pytest.raises(smtplib.SMTPDataError):
        send(port, "mallory@reject.example", message(sender="ceo@reject.example", subject="x"))
