"""Helpers for config and cluster end-to-end tests: a zeep client per node, bounded polling."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from zeep import Client
from zeep.transports import Transport

from tests.support.node import RunningNode

T = TypeVar("T")


def soap(node: RunningNode) -> Any:
    session = requests.Session()
    session.auth = ("admin", node.admin_password)
    return Client(node.soap_url + "?wsdl", transport=Transport(session=session, timeout=30)).service


def wait_until(check: Callable[[], T], *, timeout: float = 20.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy (bounded); its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the thing polled may not be reachable yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def send_mail(port: int, rcpt: str = "user@example.org", subject: str = "hello") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("sender@example.com", [rcpt],
                        f"Subject: {subject}\r\nFrom: sender@example.com\r\n\r\nbody\r\n")
