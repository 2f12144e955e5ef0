"""SMTP session caps and the pre-command timeout, over real sockets."""

from __future__ import annotations

import logging
import smtplib
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest


def greet(port: int, source: str, timeout: float = 5.0) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0))
    return sock, sock.recv(1024)


def until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(1024):
        data += chunk
    return data


def wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_per_address_cap_answers_421_and_frees_on_close(
        smtp_server: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    harness = smtp_server(max_connections_per_address=3)
    held = [greet(harness.port, "127.0.0.2") for _ in range(3)]
    assert all(banner.startswith(b"220 ") for _, banner in held)
    refused = [greet(harness.port, "127.0.0.2") for _ in range(20)]
    for sock, banner in refused:
        assert (banner + until_closed(sock)).startswith(b"421 4.7.0 ")
        sock.close()
    with smtplib.SMTP("127.0.0.1", harness.port, timeout=5) as client:  # another address
        assert client.ehlo("ok.example")[0] == 250
        client.sendmail("a@example.com", ["b@example.net"], b"Subject: x\r\n\r\nhi\r\n")
    held[0][0].close()
    def admitted() -> bool:
        sock, banner = greet(harness.port, "127.0.0.2")
        sock.close()
        return banner.startswith(b"220 ")

    wait(admitted)
    lines = [r for r in caplog.records if "open from one address" in r.getMessage()]
    assert len(lines) == 1  # one line for the condition, not one per refused connection
    for sock, _ in held:
        sock.close()


def test_total_cap_refuses_when_every_session_is_talking(smtp_server: Callable[..., Any]) -> None:
    harness = smtp_server(max_connections=4, max_connections_per_address=4)
    talking = [smtplib.SMTP("127.0.0.1", harness.port, timeout=5,
                            source_address=(f"127.0.0.{10 + i}", 0)) for i in range(4)]
    for client in talking:
        assert client.ehlo("busy.example")[0] == 250
    sock, banner = greet(harness.port, "127.0.0.20")
    assert (banner + until_closed(sock)).startswith(b"421 4.7.0 ")
    sock.close()
    for client in talking:
        client.quit()


def test_at_the_total_the_longest_silent_session_makes_room(
        smtp_server: Callable[..., Any]) -> None:
    harness = smtp_server(max_connections=4, max_connections_per_address=4)
    held = [greet(harness.port, f"127.0.0.{10 + i}") for i in range(4)]
    with smtplib.SMTP("127.0.0.1", harness.port, timeout=5) as client:
        assert client.ehlo("good.example")[0] == 250
    assert until_closed(held[0][0]).startswith(b"421 4.4.2 ")
    for sock, _ in held:
        sock.close()


def test_silent_client_is_dropped_after_the_pre_command_timeout(
        smtp_server: Callable[..., Any]) -> None:
    harness = smtp_server(pre_command_timeout=0.5)
    silent, banner = greet(harness.port, "127.0.0.2")
    trickle, _ = greet(harness.port, "127.0.0.2")
    trickle.sendall(b"EH")  # no end of line: not a command yet
    talker = smtplib.SMTP("127.0.0.1", harness.port, timeout=5)
    assert talker.ehlo("client.example")[0] == 250
    assert banner.startswith(b"220 ")
    assert until_closed(silent).startswith(b"421 4.4.2 ")
    assert until_closed(trickle).startswith(b"421 4.4.2 ")
    assert talker.noop()[0] == 250  # a client that spoke is on the session timeout instead
    talker.quit()
    silent.close()
    trickle.close()
