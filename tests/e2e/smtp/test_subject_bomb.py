"""A Subject of 300,000 encoded-word lines (quadratic for email.header.decode_header, which once
blocked every session for 108 s) is accepted, with a truncated queue subject, within 1 s of
what a message of the same size and line count costs, while another session is served."""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

import pytest
from sqlalchemy import select

from appliance.db.models import HistoryEntry, QueueEntry
from appliance.smtp.message import SUBJECT_MAX_WORDS
from tests.e2e.delivery.sink import Sink
from tests.e2e.smtp.conftest import node_store
from tests.support.node import RunningNode
from tests.support.wait import wait_until

LINES = 300_000
WORD = b"=?utf-8?q?=C3=A9?="
BOMB = b"From: a@example.com\r\nSubject: " + b"\r\n ".join([WORD] * LINES) + b"\r\n\r\nbody\r\n"
# The same size and line count with a plain Subject: what receiving such a message costs anyway.
PLAIN = BOMB.replace(WORD, b"x" * len(WORD))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, sink: Sink) -> Iterator[RunningNode]:
    with RunningNode(tmp_path_factory.mktemp("bomb"), relay=("127.0.0.1", sink.port)) as running:
        yield running


def _reply(reader: BinaryIO) -> bytes:
    while (line := reader.readline())[3:4] == b"-":
        pass
    return line


def _send(port: int, message: bytes, result: dict[str, object], dot_sent: threading.Event) -> None:
    """One raw session; `result` gets the final reply and the seconds from "." to it."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
        reader = raw.makefile("rb")
        _reply(reader)
        for line in (b"EHLO bomb.example", b"MAIL FROM:<a@example.com>",
                     b"RCPT TO:<r@example.org>", b"DATA"):
            raw.sendall(line + b"\r\n")
            assert _reply(reader)[:1] in (b"2", b"3")
        raw.sendall(message)
        sent = time.monotonic()
        raw.sendall(b".\r\n")
        dot_sent.set()
        result["reply"] = _reply(reader)
        result["after_dot"] = time.monotonic() - sent


def _subject(node: RunningNode, msgid: str) -> str:
    store = node_store(node)
    try:
        def find() -> str | None:
            with store.transaction(read_only=True) as session:
                for model in (QueueEntry, HistoryEntry):
                    found = session.scalars(select(model.subject).where(model.msgid == msgid)).first()
                    if found is not None:
                        return found
            return None
        return wait_until(find, timeout=30, what=f"message {msgid} in the queue or history")
    finally:
        store.dispose()


def test_a_subject_bomb_is_handled_within_1s_while_another_session_is_served(node: RunningNode) -> None:
    assert len(BOMB) < 25 * 1024 * 1024  # under the default message size limit
    plain: dict[str, object] = {}
    _send(node.smtp_port, PLAIN, plain, threading.Event())
    assert bytes(plain["reply"]).startswith(b"250"), plain  # type: ignore[call-overload]

    bomb: dict[str, object] = {}
    dot_sent = threading.Event()
    thread = threading.Thread(target=_send, args=(node.smtp_port, BOMB, bomb, dot_sent))
    thread.start()
    assert dot_sent.wait(60)
    started = time.monotonic()  # another client while the bomb's end of DATA is handled
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as client:
        refused = client.sendmail("s@example.com", ["other@example.org"], b"Subject: meanwhile\r\n\r\nok\r\n")
    other = time.monotonic() - started
    thread.join(120)
    assert not thread.is_alive() and refused == {}
    reply = bytes(bomb["reply"])  # type: ignore[call-overload]
    assert reply.startswith(b"250"), bomb
    extra = float(bomb["after_dot"]) - float(plain["after_dot"])  # type: ignore[arg-type]
    assert other < 1.0, (other, bomb, plain)  # the other session was not held up
    assert extra < 1.0, (bomb, plain)  # the Subject costs less than 1 s on top of the transfer
    msgid = reply.decode().split()[-1]
    assert _subject(node, msgid) == "é" * SUBJECT_MAX_WORDS  # the first 128 words, decoded
