"""R7: bad SMTP input gets the right reply, nothing half-stored, and the listener keeps serving."""

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
    client.ehlo("bad.example")
    return client


def assert_still_serving_and_nothing_else_stored(node: RunningNode, sink: Sink) -> None:
    store = node_store(node)
    try:
        before = msgids(store)
        good = send(node)
        assert msgids(store) - before == {good}
        wait_until(lambda: any(good.encode() in m.content for m in sink.messages))
    finally:
        store.dispose()


def test_unknown_commands_get_500_and_the_session_goes_on(node: RunningNode, sink: Sink) -> None:
    with session(node) as client:
        assert client.docmd("FROBNICATE", "x")[0] == 500
        assert client.docmd("MAIL", "TO:<a@b.c>")[0] == 501  # wrong keyword
        assert client.noop()[0] == 250
    assert_still_serving_and_nothing_else_stored(node, sink)


def test_too_many_unknown_commands_end_the_session(node: RunningNode, sink: Sink) -> None:
    with session(node) as client:
        codes = [client.docmd(f"BOGUS{i}")[0] for i in range(5)]
        assert codes[:4] == [500] * 4 and codes[4] == 502
    assert_still_serving_and_nothing_else_stored(node, sink)


def test_over_long_command_line_gets_500(node: RunningNode, sink: Sink) -> None:
    with session(node) as client:
        assert client.docmd("NOOP", "x" * 5000)[0] == 500
        assert client.docmd("MAIL", f"FROM:<{'a' * 600}@example.com>")[0] in (500, 553)
        assert client.noop()[0] == 250
    assert_still_serving_and_nothing_else_stored(node, sink)


@pytest.mark.parametrize("command,argument,codes", [
    ("MAIL", "FROM:<not an address>", (501, 553)),
    ("MAIL", "FROM:<nodomain>", (553,)),
    ("MAIL", "FROM:<a@b", (501, 553)),
    ("MAIL", "FROM:", (501,)),
])
def test_malformed_sender_is_refused(node: RunningNode, sink: Sink, command: str, argument: str,
                                     codes: tuple[int, ...]) -> None:
    with session(node) as client:
        assert client.docmd(command, argument)[0] in codes
        assert client.rcpt("r@example.org")[0] == 503  # no sender was accepted
    assert_still_serving_and_nothing_else_stored(node, sink)


@pytest.mark.parametrize("argument", ["TO:<nodomain>", "TO:<>", "TO:<a b@example.org>", "TO:<@x>"])
def test_malformed_recipient_is_refused(node: RunningNode, sink: Sink, argument: str) -> None:
    with session(node) as client:
        client.mail("s@example.com")
        assert client.docmd("RCPT", argument)[0] in (501, 553)
        assert client.docmd("DATA")[0] == 503  # no valid recipient
    assert_still_serving_and_nothing_else_stored(node, sink)


def test_too_many_recipients_get_452_and_the_rest_is_queued(node: RunningNode, sink: Sink) -> None:
    with session(node) as client:
        client.mail("s@example.com")
        codes = [client.rcpt(f"r{i}@example.org")[0] for i in range(5)]
        assert codes == [250, 250, 250, 452, 452]
        code, reply = client.data(b"Subject: three\r\n\r\nx\r\n")
    assert code == 250
    msgid = reply.decode().rsplit(" ", 1)[1]
    wait_until(lambda: any(msgid.encode() in m.content for m in sink.messages))
    (delivered,) = [m for m in sink.messages if msgid.encode() in m.content]
    assert sorted(delivered.rcpt_tos) == ["r0@example.org", "r1@example.org", "r2@example.org"]


def test_over_size_is_552_at_mail_and_at_data(node: RunningNode, sink: Sink) -> None:
    with session(node) as client:
        assert client.docmd("MAIL", "FROM:<s@example.com> SIZE=999999")[0] == 552
        client.mail("s@example.com")
        client.rcpt("r@example.org")
        body = b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 100  # 7 KiB > 4 KiB limit
        assert client.data(body)[0] == 552
        assert client.noop()[0] == 250
    assert_still_serving_and_nothing_else_stored(node, sink)


def test_over_long_data_line_is_refused(node: RunningNode, sink: Sink) -> None:
    with session(node) as client:
        client.mail("s@example.com")
        client.rcpt("r@example.org")
        assert client.data(b"Subject: long\r\n\r\n" + b"z" * 2000 + b"\r\n")[0] == 500
    assert_still_serving_and_nothing_else_stored(node, sink)


@pytest.mark.parametrize("cut", [b"", b"Subject: cut\r\n\r\npart of a bo", b"Subject: cut\r\n\r\nline\r\n"])
def test_disconnect_mid_data_stores_nothing(node: RunningNode, sink: Sink, cut: bytes) -> None:
    with socket.create_connection(("127.0.0.1", node.smtp_port), timeout=30) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"220")
        raw.sendall(b"HELO cut.example\r\nMAIL FROM:<s@example.com>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n")
        replies = [reader.readline()[:3] for _ in range(4)]
        assert replies == [b"250", b"250", b"250", b"354"]
        raw.sendall(cut)
        raw.shutdown(socket.SHUT_RDWR)
    assert_still_serving_and_nothing_else_stored(node, sink)


def test_non_ascii_garbage_and_binary_lines(node: RunningNode, sink: Sink) -> None:
    with socket.create_connection(("127.0.0.1", node.smtp_port), timeout=30) as raw:
        reader = raw.makefile("rb")
        reader.readline()
        raw.sendall(b"\xff\xfe\x00garbage\r\nEHLO x\r\n")
        assert reader.readline()[:1] == b"5"
        assert reader.readline().startswith(b"250")
    assert_still_serving_and_nothing_else_stored(node, sink)
