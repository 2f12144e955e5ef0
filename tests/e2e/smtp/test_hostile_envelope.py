"""Hostile envelopes and bodies against a live node: control bytes, UTF-8 without SMTPUTF8,
bare CR/LF, address literals. Each is refused at the door and nothing of it is stored."""

from __future__ import annotations

import smtplib
import socket

import pytest

from tests.e2e.delivery.sink import Sink
from tests.e2e.smtp.conftest import msgids, node_store, send
from tests.support.node import RunningNode
from tests.support.wait import wait_until


def session(node: RunningNode) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30)
    client.ehlo("probe.example")
    return client


def raw_command(node: RunningNode, line: bytes, *, before: bytes = b"") -> bytes:
    """One command line sent byte for byte (smtplib would not send NUL), after `before`."""
    with socket.create_connection(("127.0.0.1", node.smtp_port), timeout=30) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"220")
        for setup in filter(None, before.split(b"\r\n")):
            raw.sendall(setup + b"\r\n")
            while (reply := reader.readline())[3:4] == b"-":
                pass
            assert reply[:1] == b"2", (setup, reply)
        raw.sendall(line + b"\r\n")
        while (reply := reader.readline())[3:4] == b"-":
            pass
        raw.sendall(b"QUIT\r\n")
        return reply


def assert_nothing_stored_and_still_serving(node: RunningNode, sink: Sink, before: set[str]) -> None:
    store = node_store(node)
    try:
        good = send(node)
        assert msgids(store) - before == {good}
        wait_until(lambda: any(good.encode() in m.content for m in sink.messages))
    finally:
        store.dispose()


def _msgids(node: RunningNode) -> set[str]:
    store = node_store(node)
    try:
        return msgids(store)
    finally:
        store.dispose()


EHLO = b"EHLO probe.example\r\n"
MAIL = EHLO + b"MAIL FROM:<s@example.com>\r\n"


@pytest.mark.parametrize("before,line", [
    (b"", b"EHLO bad\x00host.example"),
    (b"", b"HELO bad\x01host"),
    (b"", b"EHLO bad\x7fhost"),
    (EHLO, b"MAIL FROM:<s\x00x@example.com>"),
    (EHLO, b"MAIL FROM:<s@example.com> SIZE=10\x00"),
    (EHLO, b"MAIL FROM:<s\x1b[31m@example.com>"),
    (EHLO, b"MAIL FROM:<s\xc2\x85x@example.com> SMTPUTF8"),  # U+0085, a C1 control
    (EHLO, b"MAIL FROM:<s\xffx@example.com> SMTPUTF8"),  # not UTF-8
    (MAIL, b"RCPT TO:<r\x00@example.org>"),
    (MAIL, b"RCPT TO:<r@exa\rmple.org>"),
    (MAIL, b"RCPT TO:<r\t@example.org>"),
])
def test_control_bytes_in_the_envelope_get_501(node: RunningNode, sink: Sink, before: bytes,
                                               line: bytes) -> None:
    stored = _msgids(node)
    reply = raw_command(node, line, before=before)
    assert reply.startswith(b"501 5.5.2"), reply
    assert_nothing_stored_and_still_serving(node, sink, stored)


def test_a_refused_command_leaves_the_session_usable(node: RunningNode, sink: Sink) -> None:
    with session(node) as client:
        assert client.docmd("MAIL", "FROM:<a\x01b@example.com>")[0] == 501
        client.mail("s@example.com")
        assert client.docmd("RCPT", "TO:<r\x02@example.org>")[0] == 501
        assert client.rcpt("r@example.org")[0] == 250
        code, reply = client.data(b"Subject: after 501\r\n\r\nok\r\n")
    assert code == 250
    msgid = reply.decode().rsplit(" ", 1)[1]
    wait_until(lambda: any(msgid.encode() in m.content for m in sink.messages))


def test_utf8_addresses_need_smtputf8(node: RunningNode, sink: Sink) -> None:
    stored = _msgids(node)
    with session(node) as client:
        client.command_encoding = "utf-8"  # send the UTF-8, without announcing it
        code, text = client.docmd("MAIL", "FROM:<jöran@example.com>")
        assert (code, text[:5]) == (553, b"5.6.7")
        client.mail("s@example.com")
        code, text = client.docmd("RCPT", "TO:<rené@example.org>")
        assert (code, text[:5]) == (553, b"5.6.7")
        assert client.docmd("DATA")[0] == 503  # no recipient was taken
    assert_nothing_stored_and_still_serving(node, sink, stored)


def test_utf8_addresses_with_smtputf8_are_accepted_and_relayed(node: RunningNode, sink: Sink) -> None:
    with session(node) as client:
        assert "smtputf8" in client.esmtp_features
        client.command_encoding = "utf-8"
        assert client.mail("jöran@example.com", ["SMTPUTF8"])[0] == 250
        assert client.rcpt("rené@example.org")[0] == 250
        code, reply = client.data(b"Subject: eai\r\n\r\nok\r\n")
    assert code == 250
    msgid = reply.decode().rsplit(" ", 1)[1]
    wait_until(lambda: any(msgid.encode() in m.content for m in sink.messages))
    (delivered,) = [m for m in sink.messages if msgid.encode() in m.content]
    assert delivered.rcpt_tos == ["rené@example.org"]


def test_bare_lf_from_mynetworks_is_relayed_as_crlf(node: RunningNode, sink: Sink) -> None:
    """Loopback is in the default mynetworks: a local script's LF-only message is repaired
    (the refusal for outside clients is in test_relay.py)."""
    body = b"Subject: script\nX-Id: lf\n\nline one\n.\nMAIL FROM:<evil@example.com>\rend\n"
    with session(node) as client:
        client.mail("s@example.com")
        client.rcpt("r@example.org")
        code, reply = client.data(body)  # bytes: smtplib sends them as they are
    assert code == 250, reply
    msgid = reply.decode().rsplit(" ", 1)[1]
    wait_until(lambda: any(msgid.encode() in m.content for m in sink.messages))
    (delivered,) = [m for m in sink.messages if msgid.encode() in m.content]
    # smtplib dot-stuffed the "." line at its LF; the node undid that when it made the CRLF.
    assert delivered.content.endswith(
        b"Subject: script\r\nX-Id: lf\r\n\r\nline one\r\n.\r\nMAIL FROM:<evil@example.com>\r\nend\r\n\r\n")  # smtplib added the last CRLF
    assert delivered.rcpt_tos == ["r@example.org"]  # the dot line stayed data


def test_address_literals_are_refused_by_default_even_from_loopback(node: RunningNode, sink: Sink) -> None:
    stored = _msgids(node)
    with session(node) as client:
        client.mail("s@example.com")
        for literal in ("r@[127.0.0.1]", "r@[IPv6:::1]", "r@[192.0.2.1]"):
            code, text = client.rcpt(literal)
            assert (code, text[:5]) == (550, b"5.7.1"), (literal, text)
        assert client.rcpt("r@example.org")[0] == 250  # loopback is in the default mynetworks
    assert_nothing_stored_and_still_serving(node, sink, stored)


def test_help_still_lists_the_commands_checked_at_the_door(node: RunningNode) -> None:
    with session(node) as client:
        code, text = client.docmd("HELP")
        assert code == 250 and {"EHLO", "HELO", "MAIL", "RCPT"} <= set(text.decode().split())
        assert client.docmd("HELP", "MAIL") == (250, b"Syntax: MAIL FROM: <address> [SP <mail-parameters>]")
