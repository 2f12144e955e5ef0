"""Helpers for config and cluster end-to-end tests: a zeep client per node, bounded polling (tests.support.wait)."""

from __future__ import annotations

import functools
import smtplib
from typing import Any

import requests
from zeep import Client
from zeep.transports import Transport

from tests.support.node import RunningNode
from tests.support.wait import wait_until as _wait_until

def soap(node: RunningNode) -> Any:
    session = requests.Session()
    session.auth = ("admin", node.admin_password)
    return Client(node.soap_url + "?wsdl", transport=Transport(session=session, timeout=30)).service


# SOAP calls fail while a node restarts or the cluster store is away: errors count as "not yet".
wait_until = functools.partial(_wait_until, timeout=20.0, retry=(Exception,))



def send_mail(port: int, rcpt: str = "user@example.org", subject: str = "hello") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("sender@example.com", [rcpt],
                        f"Subject: {subject}\r\nFrom: sender@example.com\r\n\r\nbody\r\n")
