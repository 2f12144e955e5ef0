"""DKIM signing through a live node: mail into its SMTP listener comes out at a loopback sink
signed, and dkimpy verifies it against the DNS record `appliance dkim keygen` printed (dkimpy's
`dnsfunc` stands in for internet DNS). Retries, key rotation by config, script choices, bounces
and hostile key management over SOAP and the CLI."""

from __future__ import annotations

import re
import smtplib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest
import requests
from aiosmtpd.controller import Controller
from sqlalchemy import select
from zeep import Client
from zeep.exceptions import Fault
from zeep.transports import Transport

from appliance import cli
from appliance.db.engine import Store
from appliance.db.models import AuditRecord
from appliance.mailauth.keys import KeyStore
from tests.e2e.delivery.sink import SinkHandler
from tests.support.node import RunningNode
from tests.support.postgres import free_port
from tests.support.wait import wait_until

SCRIPT = '''
function data(s, msg)
  local subject = msg.subject
  if subject:find("skipme", 1, true) then dkim_skip() end
  if subject:find("chooseme", 1, true) then dkim_sign("ed.test", "e1") end
end
'''

CONFIG = '''
[node]
hostname = "gw.test"

[[listeners]]
id = "inbound"
port = 2525
script = "main"

[[transports]]
id = "default"
nexthop = "127.0.0.1:{sink}"
starttls = "none"

[smtp]
processes = 1

[queue]
retry_schedule = [1]
poll_interval = 0.1

[scripts]
main = """{script}"""
'''


class RecordingHandler(SinkHandler):
    """Records every DATA it is sent, also those it answers with a scripted refusal."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts.append(envelope.original_content or envelope.content)
        return await super().handle_DATA(server, session, envelope)


def _txt(record: str) -> bytes:
    """The TXT data of a printed record: its quoted strings joined (RFC 6376 section 3.6.2.2)."""
    assert record.count('"') >= 2 and len(max(re.findall(r'"([^"]*)"', record), key=len)) <= 255
    return "".join(re.findall(r'"([^"]*)"', record)).encode()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("dkim-e2e")
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), ready_timeout=10)
    controller.start()
    node = RunningNode(tmp, config_text=CONFIG.format(sink=controller.port, script=SCRIPT))
    records: dict[str, bytes] = {}
    for domain, selector, algorithm in (("example.com", "s1", "rsa"), ("ed.test", "e1", "ed25519")):
        done = node.cli("dkim", "keygen", domain, selector, "--algorithm", algorithm)
        assert done.returncode == 0, done.stderr
        [record] = [line for line in done.stdout.splitlines() if "._domainkey." in line]
        assert record.startswith(f"{selector}._domainkey.{domain}. IN TXT ")
        records[f"{selector}._domainkey.{domain}."] = _txt(record)
    keys = KeyStore(node.data_dir / "keys" / "dkim")  # the CLI's own code, without a process each
    for domain, selector, algorithm in (("rot.test", "s1", "rsa"), ("rot.test", "s2", "ed25519"),
                                        ("gw.test", "b1", "ed25519")):
        info = keys.create(domain, selector, algorithm)
        records[f"{selector}._domainkey.{domain}."] = _txt(info.dns_record())
    key = node.data_dir / "keys" / "dkim" / "example.com" / "s1.pem"
    assert key.stat().st_mode & 0o777 == 0o600 and key.parent.stat().st_mode & 0o777 == 0o700
    try:
        with node:
            session = requests.Session()
            session.auth = ("admin", node.admin_password)
            api = Client(node.soap_url + "?wsdl", transport=Transport(session=session, timeout=30)).service
            yield {"node": node, "sink": handler, "api": api, "records": records}
    finally:
        controller.stop()


def _dns(records: dict[str, bytes]) -> Any:
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name.decode())
    return lookup


def _send(env: dict[str, Any], sender: str, subject: str, rcpt: str = "bob@dest.example") -> bytes:
    """Send one message through the node; return what the sink finally accepted."""
    tag = uuid.uuid4().hex
    msg = (f"From: Alice <{sender}>\r\nTo: {rcpt}\r\nSubject: {subject} {tag}\r\n"
           f"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{tag}@x>\r\n\r\n"
           f"Hello {tag}.\r\n.leading dot\r\n").encode()
    with smtplib.SMTP("127.0.0.1", env["node"].smtp_port, timeout=30) as client:
        client.sendmail(sender, [rcpt], msg)
    sink = env["sink"]
    return wait_until(lambda: next((m.content for m in sink.messages if tag.encode() in m.content), None),
                      timeout=60, what=f"message {tag} at the sink")


def _signature(content: bytes) -> dict[bytes, bytes]:
    fields, _ = dkim.rfc822_parse(content)
    sigs = [v for n, v in fields if n.lower() == b"dkim-signature"]
    assert len(sigs) == 1, sigs
    return dict(dkim.util.parse_tag_value(sigs[0]))


@pytest.mark.parametrize(("sender", "domain", "selector", "algorithm"), [
    ("alice@example.com", b"example.com", b"s1", b"rsa-sha256"),
    ("alice@ed.test", b"ed.test", b"e1", b"ed25519-sha256"),
])
def test_mail_is_signed_with_the_from_domains_key_and_verifies(
        env: dict[str, Any], sender: str, domain: bytes, selector: bytes, algorithm: bytes) -> None:
    content = _send(env, sender, "signed")
    tags = _signature(content)
    assert (tags[b"d"], tags[b"s"], tags[b"a"], tags[b"c"]) == (domain, selector, algorithm,
                                                                 b"relaxed/relaxed")
    assert b"from" in tags[b"h"] and b"subject" in tags[b"h"]
    assert dkim.verify(content, dnsfunc=_dns(env["records"]))
    tampered = content.replace(b"Hello", b"Jello")
    assert not dkim.verify(tampered, dnsfunc=_dns(env["records"]))


def test_mail_of_a_domain_without_key_is_not_signed(env: dict[str, Any]) -> None:
    content = _send(env, "carol@nokey.example", "unsigned")
    assert b"DKIM-Signature" not in content


def test_a_retry_sends_the_signature_of_the_first_attempt(env: dict[str, Any]) -> None:
    sink = env["sink"]
    sink.data_replies.append("451 4.3.0 try again later")
    before = len(sink.attempts)
    content = _send(env, "alice@example.com", "retried")
    attempts = sink.attempts[before:]
    assert len(attempts) >= 2  # refused once, then accepted: the very same bytes both times
    assert attempts[0] == attempts[-1] == content
    assert dkim.verify(content, dnsfunc=_dns(env["records"]))
    tag = re.search(rb"retried ([0-9a-f]{32})", content)
    assert tag is not None
    history = env["api"].mailHistory(filter=f"subject~{tag.group(1).decode()}", offset=0, limit=10).result.item
    actions = sorted(h.msgaction for h in history)
    assert actions == ["DEFER", "DELIVER"]
    kept = {p.first: p.second for p in history[0].msgmetadata.item}
    assert kept["dkim_signature"].startswith("DKIM-Signature: v=1; a=rsa-sha256;")


def test_a_script_skips_or_chooses_the_key(env: dict[str, Any]) -> None:
    skipped = _send(env, "alice@example.com", "skipme")
    assert b"DKIM-Signature" not in skipped
    chosen = _send(env, "alice@example.com", "chooseme")
    tags = _signature(chosen)
    assert (tags[b"d"], tags[b"s"]) == (b"ed.test", b"e1")
    assert dkim.verify(chosen, dnsfunc=_dns(env["records"]))


def test_node_bounces_are_not_signed_unless_configured(env: dict[str, Any]) -> None:
    sink = env["sink"]
    sink.rcpt_replies["gone@dest.example"] = "550 5.1.1 no such user"
    tag = uuid.uuid4().hex
    with smtplib.SMTP("127.0.0.1", env["node"].smtp_port, timeout=30) as client:
        client.sendmail("alice@example.com", ["gone@dest.example"],
                        f"From: alice@example.com\r\nSubject: bounce {tag}\r\n\r\nx\r\n")
    dsn = wait_until(lambda: next((m.content for m in sink.messages
                                   if tag.encode() in m.content and m.rcpt_tos == ["alice@example.com"]), None),
                     timeout=60, what="the DSN at the sink")
    assert b"gw.test" in dsn.split(b"\r\n\r\n")[0]  # From the node, whose domain has a key
    assert b"DKIM-Signature" not in dsn.split(b"\r\n\r\n")[0]


def _delivery_applied(node: RunningNode, revision: int) -> bool:
    logs = node.data_dir / "log"
    return any(f"config revision {revision} applied" in line and "delivery" in line
               for path in logs.glob("*.log*") for line in path.read_text(errors="replace").splitlines())


def test_key_rotation_by_config_without_restart(env: dict[str, Any]) -> None:
    node, api = env["node"], env["api"]
    children = node.children()
    first = _signature(_send(env, "alice@rot.test", "rotation"))
    assert first[b"s"] == b"s1"  # no selector configured: the domain's oldest key
    listed = {(k.domain, k.selector): k.active for k in api.dkimKeyList()}
    assert listed[("rot.test", "s1")] and not listed[("rot.test", "s2")]
    text = api.configTextGet()
    revision = api.configTextSet(text=text + '\n[dkim.domains."rot.test"]\nselector = "s2"\n',
                                 comment="rotate rot.test to s2")
    wait_until(lambda: _delivery_applied(node, revision), timeout=30, what="delivery on the new revision")
    content = _send(env, "alice@rot.test", "rotation")
    tags = _signature(content)
    assert (tags[b"s"], tags[b"a"]) == (b"s2", b"ed25519-sha256")
    assert dkim.verify(content, dnsfunc=_dns(env["records"]))
    listed = {(k.domain, k.selector): k.active for k in api.dkimKeyList()}
    assert listed[("rot.test", "s2")] and not listed[("rot.test", "s1")]
    assert node.children() == children  # the same processes: no restart


def _audit(node: RunningNode, operation: str) -> list[tuple[str, str]]:
    store = Store(f"sqlite:///{(node.data_dir / 'appliance.db').resolve()}")
    try:
        with store.transaction(read_only=True) as s:
            return [(r.outcome, r.arguments) for r in s.scalars(
                select(AuditRecord).where(AuditRecord.operation == operation).order_by(AuditRecord.id))]
    finally:
        store.dispose()


def _key_files(node: RunningNode) -> set[str]:
    root = node.data_dir / "keys" / "dkim"
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_soap_generate_list_delete(env: dict[str, Any]) -> None:
    node, api = env["node"], env["api"]
    record = api.dkimKeyGenerate(domain="New.Example", selector="k1", algorithm="ed25519")
    assert record.startswith('k1._domainkey.new.example. IN TXT "v=DKIM1; k=ed25519; p=')
    listed = {(k.domain, k.selector): k for k in api.dkimKeyList()}
    item = listed[("new.example", "k1")]
    assert (item.algorithm, item.dnsrecord, item.active) == ("ed25519", record, True)
    assert "PRIVATE" not in str(api.dkimKeyList())
    content = _send(env, "x@new.example", "fresh key")  # the delivery process sees it at once
    assert dkim.verify(content, dnsfunc=_dns({"k1._domainkey.new.example.": _txt(record)}))
    api.dkimKeyDelete(domain="new.example", selector="k1")
    assert ("new.example", "k1") not in {(k.domain, k.selector) for k in api.dkimKeyList()}
    assert "new.example" not in _key_files(node)
    assert [o for o, _ in _audit(node, "dkimKeyGenerate")][-1] == "ok"
    assert [o for o, _ in _audit(node, "dkimKeyDelete")][-1] == "ok"


@pytest.mark.parametrize(("arguments", "code", "words"), [
    ({"domain": "../../etc", "selector": "s1", "algorithm": "rsa"}, "Client.InvalidInput", "not a domain name"),
    ({"domain": "example.com", "selector": "../s1", "algorithm": "rsa"}, "Client.InvalidInput", "not a DKIM selector"),
    ({"domain": "example.com", "selector": "a/b", "algorithm": "rsa"}, "Client.InvalidInput", "not a DKIM selector"),
    ({"domain": "/etc", "selector": "passwd", "algorithm": "rsa"}, "Client.InvalidInput", "not a domain name"),
    ({"domain": "example.com", "selector": "x" * 64, "algorithm": "rsa"}, "Client.InvalidInput", "at most 63"),
    ({"domain": "example.com", "selector": "s9", "algorithm": "dsa"}, "Client.InvalidInput", "unknown DKIM key algorithm"),
    ({"domain": "example.com", "selector": "s1", "algorithm": "rsa"}, "Client.Conflict", "exists already"),
    ({"domain": "", "selector": "s1", "algorithm": "rsa"}, "Client.InvalidInput", "domain is required"),
])
def test_hostile_generate_is_a_clear_fault_and_writes_nothing(
        env: dict[str, Any], arguments: dict[str, str], code: str, words: str) -> None:
    node, api = env["node"], env["api"]
    before = _key_files(node)
    original = (node.data_dir / "keys" / "dkim" / "example.com" / "s1.pem").read_bytes()
    with pytest.raises(Fault) as info:
        api.dkimKeyGenerate(**arguments)
    assert info.value.code.endswith(code) and words in info.value.message
    assert _key_files(node) == before
    assert (node.data_dir / "keys" / "dkim" / "example.com" / "s1.pem").read_bytes() == original
    assert _audit(node, "dkimKeyGenerate")[-1][0].startswith("fault:")


def test_delete_of_unknown_or_hostile_names_faults(env: dict[str, Any]) -> None:
    node, api = env["node"], env["api"]
    before = _key_files(node)
    for domain, selector, code in (("example.com", "nope", "Client.NotFound"),
                                   ("..", "s1", "Client.InvalidInput"),
                                   ("example.com", "../../appliance", "Client.InvalidInput")):
        with pytest.raises(Fault) as info:
            api.dkimKeyDelete(domain=domain, selector=selector)
        assert info.value.code.endswith(code)
    assert _key_files(node) == before


def test_readonly_users_list_but_may_not_change_keys(env: dict[str, Any]) -> None:
    node, api = env["node"], env["api"]
    api.userAdd(username="viewer", password="viewer-pw", role="readonly")
    session = requests.Session()
    session.auth = ("viewer", "viewer-pw")
    viewer = Client(node.soap_url + "?wsdl", transport=Transport(session=session, timeout=30)).service
    assert {k.domain for k in viewer.dkimKeyList()} >= {"example.com", "ed.test"}
    for call in (lambda: viewer.dkimKeyGenerate(domain="v.example", selector="s1", algorithm="rsa"),
                 lambda: viewer.dkimKeyDelete(domain="example.com", selector="s1")):
        with pytest.raises(Fault) as info:
            call()
        assert info.value.code.endswith("Client.Forbidden")
    assert (node.data_dir / "keys" / "dkim" / "example.com" / "s1.pem").exists()


def test_cli_refuses_hostile_names_and_existing_keys(env: dict[str, Any],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    node = env["node"]
    before = _key_files(node)
    base = ["--data-dir", str(node.data_dir), "dkim"]  # the CLI in-process: one start-up less each
    for args in (("keygen", "../x", "s1"), ("keygen", "example.com", "../../s"),
                 ("keygen", "example.com", "s1"), ("remove", "example.com", "missing"),
                 ("remove", "..", "s1")):
        assert cli.main([*base, *args]) == 1, args
        assert capsys.readouterr().err.startswith("appliance: "), args
    with pytest.raises(SystemExit) as exited:
        cli.main([*base, "keygen", "example.com", "s5", "--algorithm", "dsa"])
    assert exited.value.code == 2
    assert _key_files(node) == before
    capsys.readouterr()
    assert cli.main([*base, "list"]) == 0
    listing = capsys.readouterr().out
    assert "example.com\ts1\trsa" in listing and "ed.test\te1\ted25519" in listing
