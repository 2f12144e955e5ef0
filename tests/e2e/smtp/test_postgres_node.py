"""A node on PostgreSQL (`--database`): the schema is made at start, mail is queued and relayed."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest
from sqlalchemy import select

from appliance.db.engine import Store
from appliance.db.models import HistoryEntry
from tests.e2e.delivery.sink import Sink
from tests.support.node import RunningNode
from tests.support.postgres import PostgresServer
from tests.support.wait import wait_until


@pytest.mark.postgres
def test_node_on_postgresql_accepts_and_relays(tmp_path: Path, pg_server: PostgresServer, sink: Sink) -> None:
    url = pg_server.create_database("e2e_smtp_node")  # empty: `appliance` upgrades it itself
    with RunningNode(tmp_path, database_url=url, relay=("127.0.0.1", sink.port)) as node:
        with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as client:
            client.ehlo("pg.example")
            client.mail("s@example.com")
            client.rcpt("r@example.org")
            code, reply = client.data(b"Subject: on postgres\r\n\r\nbody\r\n")
        assert code == 250
        msgid = reply.decode().rsplit(" ", 1)[1]
        wait_until(lambda: any(msgid.encode() in m.content for m in sink.messages), timeout=60)
        store = Store(url)
        try:
            def delivered() -> list[str]:
                with store.transaction(read_only=True) as session:
                    return list(session.scalars(select(HistoryEntry.action).where(HistoryEntry.msgid == msgid)))
            wait_until(lambda: delivered() == ["DELIVER"], timeout=30)
        finally:
            store.dispose()
