"""A real node relaying to a loopback sink, shared by a test module; store read-back helpers."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, QueueEntry
from appliance.settings import default_database_url
from tests.e2e.delivery.sink import Sink
from tests.support.node import RunningNode

LIMITS_CONFIG = """
[[listeners]]
id = "inbound"
port = 2525
max_message_size = 4096
max_recipients = 3
"""


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    with Sink() as s:
        yield s


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, sink: Sink) -> Iterator[RunningNode]:
    with RunningNode(tmp_path_factory.mktemp("node"), config_text=LIMITS_CONFIG,
                     relay=("127.0.0.1", sink.port)) as running:
        yield running


def node_store(node: RunningNode) -> Store:
    return Store(node.database_url or default_database_url(Path(node.data_dir)))


def msgids(store: Store) -> set[str]:
    """Every message id the node holds in its queue or has written to history."""
    with store.transaction(read_only=True) as session:
        return set(session.scalars(select(QueueEntry.msgid))) | set(
            session.scalars(select(HistoryEntry.msgid)))


def send(node: RunningNode, rcpts: list[str] | None = None, body: bytes = b"Subject: ok\r\n\r\nok\r\n") -> str:
    """Send one good message; return its msgid from the 250 reply."""
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as client:
        client.ehlo("good.example")
        client.mail("sender@example.com")
        for rcpt in rcpts or ["rcpt@example.org"]:
            client.rcpt(rcpt)
        code, reply = client.data(body)
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]
