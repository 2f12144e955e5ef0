"""ARC sealing through a live node: checked mail into its SMTP listener comes out at a loopback
sink with an ARC set that dkimpy verifies against the DNS record `appliance dkim keygen`
printed (dkimpy's `dnsfunc` stands in for internet DNS; the node's own checks ask a DNS server
on loopback). An existing chain is continued, a retry sends the set of the first attempt, and
a revision naming a key the node lacks is refused."""

from __future__ import annotations

import re
import smtplib
import uuid
from collections.abc import Iterator
from typing import Any

import dkim
import pytest
import requests
import zeep

from tests.e2e.delivery.sink import Sink
from tests.support.dkimkeys import arc_forwarded, message, rsa_key, txt_chunks
from tests.support.dnszone import Zone, served
from tests.support.node import RunningNode
from tests.support.wait import wait_until

CONFIG = '''
[node]
hostname = "gw.example.net"

[[listeners]]
id = "inbound"
port = 2525

[[transports]]
id = "default"
nexthop = "127.0.0.1:{sink}"
starttls = "none"

[smtp]
processes = 1

[queue]
retry_schedule = [1]
poll_interval = 0.1

[mailauth]
enabled = true
nameservers = ["127.0.0.1:{dns}"]
dns_timeout = 1.0
arc_seal = true
arc_selector = "arc1"
'''


def _txt(record: str) -> bytes:
    """The TXT data of a printed record: its quoted strings joined (RFC 6376 section 3.6.2.2)."""
    return "".join(re.findall(r'"([^"]*)"', record)).encode()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    zone = Zone()
    zone.txt("example.com", "v=spf1 ip4:127.0.0.0/8 -all")
    zone.txt("_dmarc.example.com", "v=DMARC1; p=none")
    zone.txt("sel._domainkey.forwarder.example", txt_chunks(rsa_key()[1]))  # type: ignore[arg-type]
    records = {"sel._domainkey.forwarder.example.": rsa_key()[1].encode()}
    with served(zone) as dns_port, Sink() as sink:
        node = RunningNode(tmp_path_factory.mktemp("arc"),
                           config_text=CONFIG.format(sink=sink.port, dns=dns_port))
        for domain, selector in (("gw.example.net", "arc1"), ("example.com", "s1")):
            done = node.cli("dkim", "keygen", domain, selector)  # s1 DKIM-signs alice's mail
            assert done.returncode == 0, done.stderr
            [record] = [line for line in done.stdout.splitlines() if "._domainkey." in line]
            records[f"{selector}._domainkey.{domain}."] = _txt(record)
        with node:
            session = requests.Session()
            session.auth = ("admin", node.admin_password)
            api = zeep.Client(node.soap_url + "?wsdl",
                              transport=zeep.Transport(session=session, timeout=30)).service
            yield {"node": node, "sink": sink, "records": records, "api": api}


def _dns(records: dict[str, bytes]) -> Any:
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name.decode())
    return lookup


def _send(env: dict[str, Any], content: bytes) -> tuple[bytes, str]:
    """Send one message from alice@example.com through the node; what the sink accepted."""
    tag = uuid.uuid4().hex
    rcpt = f"{tag}@dest.example"
    with smtplib.SMTP("127.0.0.1", env["node"].smtp_port, timeout=30) as client:
        client.ehlo("client.example")
        client.sendmail("alice@example.com", [rcpt], content)
    sink = env["sink"]
    found = wait_until(lambda: next((m.content for m in sink.messages if rcpt in m.rcpt_tos), None),
                       timeout=60, what=f"the message to {rcpt} at the sink")
    return bytes(found), tag


def _tags(content: bytes, name: bytes) -> list[dict[bytes, bytes]]:
    fields, _ = dkim.rfc822_parse(content)
    return [dict(dkim.util.parse_tag_value(v)) for n, v in fields if n.lower() == name.lower()]


def test_checked_mail_comes_out_with_a_verifiable_arc_set(env: dict[str, Any]) -> None:
    content, _ = _send(env, message(subject="sealed"))
    [seal] = _tags(content, b"ARC-Seal")
    assert (seal[b"i"], seal[b"cv"], seal[b"d"], seal[b"s"]) == (b"1", b"none", b"gw.example.net", b"arc1")
    head = content.split(b"\r\n\r\n")[0]
    assert head.startswith(b"ARC-Seal: ")  # on top, the set the node added last
    aar = re.search(rb"ARC-Authentication-Results: i=1; gw.example.net;(.*?)\r\n(?! )", head, re.S)
    assert aar is not None and b"spf=pass" in aar.group(1) and b"dmarc=" in aar.group(1)
    cv, results, reason = dkim.arc_verify(content, dnsfunc=_dns(env["records"]))
    assert cv == b"pass", reason
    assert [r["instance"] for r in results] == [1]
    # The node's DKIM signature, below the set, verifies too: neither covers the other.
    names = [n.lower() for n, _ in dkim.rfc822_parse(content)[0]]
    assert names[:4] == [b"arc-seal", b"arc-message-signature", b"arc-authentication-results",
                         b"dkim-signature"]
    assert dkim.verify(content, dnsfunc=_dns(env["records"]))
    cv, _, _ = dkim.arc_verify(content.replace(b"Hello Bob.", b"Hello Eve."), dnsfunc=_dns(env["records"]))
    assert cv == b"fail"


def test_a_forwarders_chain_is_continued_with_i2_and_cv_pass(env: dict[str, Any]) -> None:
    content, _ = _send(env, arc_forwarded(message(subject="forwarded")))
    seals = sorted(_tags(content, b"ARC-Seal"), key=lambda t: t[b"i"])
    assert [(t[b"i"], t[b"cv"], t[b"d"]) for t in seals] == [
        (b"1", b"none", b"forwarder.example"), (b"2", b"pass", b"gw.example.net")]
    cv, results, reason = dkim.arc_verify(content, dnsfunc=_dns(env["records"]))
    assert cv == b"pass", reason
    assert sorted(r["instance"] for r in results) == [1, 2]


def test_a_retry_sends_the_set_of_the_first_attempt(env: dict[str, Any]) -> None:
    sink = env["sink"]
    sink.handler.data_replies.append("451 4.3.0 try again later")
    content, tag = _send(env, message(subject="retried"))
    assert dkim.arc_verify(content, dnsfunc=_dns(env["records"]))[0] == b"pass"
    api = env["api"]
    history = wait_until(lambda: _history(api, tag), what="two history rows")
    assert sorted(h.msgaction for h in history) == ["DEFER", "DELIVER"]
    for row in history:
        kept = {p.first: p.second for p in row.msgmetadata.item}
        # The set the retry sent is the one recorded at the first attempt.
        assert content.startswith(kept["arc_seal"].encode())


def _history(api: Any, tag: str) -> list[Any] | None:
    answer = api.mailHistory(filter=f"to={tag}@dest.example", offset=0, limit=10)
    rows = list(answer.result.item) if answer.result else []
    return rows if len(rows) == 2 else None


def _logged(env: dict[str, Any], words: str) -> bool:
    logs = env["node"].data_dir / "log"
    return any(words in line for path in logs.glob("*.log*")
               for line in path.read_text(errors="replace").splitlines())


def test_a_revision_sealing_with_a_missing_key_is_refused(env: dict[str, Any]) -> None:
    api = env["api"]
    text = api.configTextGet()
    revision = api.configTextSet(text=text.replace('arc_selector = "arc1"', 'arc_selector = "gone"'),
                                 comment="seal with a key this node lacks")
    wait_until(lambda: _logged(env, f"config revision {revision} not applied"), timeout=30,
               what="the revision refused")
    assert _logged(env, "no DKIM key gone for gw.example.net")
    content, _ = _send(env, message(subject="still sealed"))  # the last good revision runs on
    [seal] = _tags(content, b"ARC-Seal")
    assert seal[b"s"] == b"arc1"
    assert dkim.arc_verify(content, dnsfunc=_dns(env["records"]))[0] == b"pass"
