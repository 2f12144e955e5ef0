"""sd_notify datagrams reach a real UNIX socket as systemd would read them."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.sdnotify import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield sock, path
    finally:
        sock.close()


def test_ready_status_stopping_and_watchdog(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000",
                         "WATCHDOG_PID": str(os.getpid())})
    assert notifier.enabled and notifier.watchdog_interval == 10.0
    assert notifier.ready("SMTP on 127.0.0.1:2525")
    assert sock.recv(4096) == b"READY=1\nSTATUS=SMTP on 127.0.0.1:2525"
    notifier.ping()
    assert sock.recv(4096) == b"WATCHDOG=1"
    notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_socket_address() -> None:
    name = f"appliance-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_without_systemd_nothing_is_sent_and_no_watchdog() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert notifier.ready() is False


def test_watchdog_meant_for_another_process_is_ignored(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "x"), "WATCHDOG_USEC": "1000000",
                         "WATCHDOG_PID": "1"})
    assert notifier.watchdog_interval is None


def test_a_vanished_socket_is_logged_not_raised(tmp_path: Path) -> None:
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready() is False
