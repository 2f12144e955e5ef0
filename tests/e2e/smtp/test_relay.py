"""Relay control on a live node: with loopback left out of mynetworks the test client is an
outside client, which may send to the local domains only, unless it authenticates."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from tests.e2e.delivery.sink import Sink
from tests.e2e.smtp.conftest import msgids, node_store
from tests.support.node import RunningNode
from tests.support.wait import wait_until

OUTSIDE_CONFIG = """
[[listeners]]
id = "inbound"
port = 2525
auth = true

[relay]
mynetworks = ["192.0.2.0/24", "2001:db8::/32"]
domains = ["local.test", ".sub.test"]
"""


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory, sink: Sink) -> Iterator[RunningNode]:
    with RunningNode(tmp_path_factory.mktemp("outside"), config_text=OUTSIDE_CONFIG,
                     relay=("127.0.0.1", sink.port)) as running:
        yield running


def session(node: RunningNode) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30)
    client.ehlo("outside.example")
    return client


def queued_recipients(node: RunningNode, msgid: str, sink: Sink) -> list[str]:
    wait_until(lambda: any(msgid.encode() in m.content for m in sink.messages))
    return sorted(r for m in sink.messages if msgid.encode() in m.content for r in m.rcpt_tos)


def test_an_outside_client_may_not_relay(outside: RunningNode, sink: Sink) -> None:
    store = node_store(outside)
    try:
        before = msgids(store)
        with session(outside) as client:
            client.mail("s@example.com")
            for rcpt in ("r@example.org", "r@sub.test", "r@local.test.evil.example", "r@[127.0.0.1]"):
                code, text = client.rcpt(rcpt)
                assert code in (550, 554) and text.startswith(b"5.7.1"), (rcpt, code, text)
            assert client.rcpt("r@example.org")[1] == b"5.7.1 Relay access denied"
            assert client.docmd("DATA")[0] == 503  # no recipient was taken
        assert msgids(store) == before
    finally:
        store.dispose()


def test_an_outside_client_may_send_to_the_local_domains(outside: RunningNode, sink: Sink) -> None:
    with session(outside) as client:
        client.mail("s@example.com")
        assert client.rcpt("r@LOCAL.test")[0] == 250
        assert client.rcpt("r@deep.in.sub.test")[0] == 250
        assert client.rcpt("r@example.org")[0] == 554
        code, reply = client.data(b"Subject: inbound\r\n\r\nfor a local domain\r\n")
    assert code == 250
    msgid = reply.decode().rsplit(" ", 1)[1]
    assert queued_recipients(outside, msgid, sink) == ["r@LOCAL.test", "r@deep.in.sub.test"]


@pytest.mark.parametrize("body", [
    b"Subject: lf\r\n\r\nline one\nline two\r\n",
    b"Subject: smuggle\r\n\r\nx\n.\nMAIL FROM:<evil@example.com>\r\n",
    b"Subject: cr\r\n\r\nline one\rline two\r\n",
    b"Subject: lf\nX-Header: in the header\r\n\r\nbody\r\n",
])
def test_bare_cr_or_lf_from_outside_is_refused(outside: RunningNode, sink: Sink, body: bytes) -> None:
    store = node_store(outside)
    try:
        before = msgids(store)
        with session(outside) as client:
            client.mail("s@example.com")
            client.rcpt("r@local.test")
            code, text = client.data(body)  # bytes: smtplib sends them as they are
            assert (code, text[:5]) == (550, b"5.5.2"), text
            assert client.noop()[0] == 250  # DATA was framed by CRLF.CRLF: the session goes on
            assert client.rcpt("r@local.test")[0] == 503  # that transaction is over
        assert msgids(store) == before
    finally:
        store.dispose()


def test_an_authenticated_client_may_relay_but_not_to_address_literals(outside: RunningNode,
                                                                       sink: Sink) -> None:
    with session(outside) as client:
        client.login("admin", outside.admin_password)
        client.mail("s@example.com")
        assert client.rcpt("r@example.org")[0] == 250
        assert client.rcpt("r@[127.0.0.1]")[0] == 550  # literals stay refused unless configured
        code, reply = client.data(b"Subject: submission\r\n\r\nrelayed\r\n")
    assert code == 250
    msgid = reply.decode().rsplit(" ", 1)[1]
    assert queued_recipients(outside, msgid, sink) == ["r@example.org"]
