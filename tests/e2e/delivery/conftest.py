"""Helpers for driving DeliveryService in-process against loopback sinks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from appliance.config.schema import Config, NodeSection, QueueSection, Transport
from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, QueueEntry
from appliance.db.schema import upgrade
from appliance.queue import store as q
from appliance.queue.spool import Spool
from appliance.types import Envelope, NewMessage


class FakeClock:
    """A clock that moves only when told; `reads` counts the service's looks at it (each
    claim takes one), so a test can wait for "several more polls" by count, not by time."""

    def __init__(self) -> None:
        self.now = time.time()
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeResolver:
    """Internet DNS stands in here: names map to loopback addresses."""

    def __init__(self, mx: dict[str, list[tuple[int, str]]] | None = None,
                 hosts: dict[str, list[str]] | None = None) -> None:
        self.mx_records = mx or {}
        self.hosts = hosts or {"localhost": ["127.0.0.1"]}
        self.queries: list[str] = []

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        from appliance.delivery.routing import RouteError

        self.queries.append(f"MX {domain}")
        if domain not in self.mx_records and domain not in self.hosts:
            raise RouteError(f"domain {domain} does not exist", permanent=True)
        return self.mx_records.get(domain, [])

    async def addresses(self, host: str) -> list[str]:
        self.queries.append(f"A {host}")
        return self.hosts.get(host, [])


def make_config(sink_port: int | None, *, workers: int = 2, schedule: list[int] | None = None,
                lifetime: int = 3600, **transport: Any) -> Config:
    nexthop = f"127.0.0.1:{sink_port}" if sink_port else ""
    transport.setdefault("starttls", "none")
    return Config(
        node=NodeSection(hostname="gw.test"),
        transports=[Transport(id="default", nexthop=transport.pop("nexthop", nexthop), **transport)],
        queue=QueueSection(workers=workers, retry_schedule=schedule or [60], lifetime=lifetime,
                           poll_interval=0.05, lease=60),
    )


def body(subject: str = "Hello", msgid: str = "") -> bytes:
    return (f"From: alice@sender.test\r\nTo: bob@dest.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{msgid or uuid.uuid4()}@sender.test>\r\n\r\nHello there.\r\n").encode()


def enqueue(store: Store, spool: Spool, *rcpts: str, sender: str = "alice@sender.test",
            received: float | None = None, subject: str = "Hello", now: float | None = None) -> list[int]:
    msgid = str(uuid.uuid4())
    data = body(subject)
    path = spool.write(msgid, data)
    t = time.time() if now is None else now
    with store.transaction() as s:
        return q.enqueue(s, NewMessage(
            msgid=msgid, envelope=Envelope(sender=sender, recipients=rcpts, listener="inbound"),
            path=path, size=len(data), subject=subject, received=t if received is None else received,
            transport="default",
        ), now=t)


def queue_rows(store: Store) -> list[QueueEntry]:
    with store.transaction(read_only=True) as s:
        return list(s.scalars(select(QueueEntry).order_by(QueueEntry.id)))


def history_rows(store: Store) -> list[HistoryEntry]:
    with store.transaction(read_only=True) as s:
        return list(s.scalars(select(HistoryEntry).order_by(HistoryEntry.id)))


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(store.engine)
    try:
        yield store
    finally:
        store.dispose()
