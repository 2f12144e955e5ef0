"""An in-process SMTP server (the node's real listener code) on a loopback port, over a store."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.config.schema import Listener
from appliance.db.engine import Store
from appliance.policy.flow import DefaultFlow, Flow
from appliance.queue.intake import Intake
from appliance.queue.spool import Spool
from appliance.smtp.server import SmtpServer


class SmtpHarness:
    """Runs SmtpServer on its own event loop thread; tests talk to it with smtplib."""

    def __init__(self, store: Store, spool: Spool, tls_dir: Path, *, flow: Flow | None = None,
                 **listener: Any) -> None:
        self.store = store
        self.spool = spool
        self.enqueued = 0
        self.intake = Intake(store, spool)
        self.server = SmtpServer(
            store=store, intake=self.intake,
            listeners=[Listener(**{"id": "inbound", "port": 0, **listener})], hostname="mx.test",
            tls_dir=tls_dir, flow=flow or DefaultFlow(), on_enqueued=self._count,
        )
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def _count(self) -> None:
        self.enqueued += 1

    def __enter__(self) -> "SmtpHarness":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)
        self.port = self.server.port_of("inbound")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def smtp_server(store: Store, spool: Spool, tmp_path: Path) -> Iterator[Callable[..., SmtpHarness]]:
    started: list[SmtpHarness] = []

    def make(**kwargs: Any) -> SmtpHarness:
        harness = SmtpHarness(store, spool, tmp_path / "tls", **kwargs).__enter__()
        started.append(harness)
        return harness

    yield make
    for harness in started:
        harness.__exit__(None, None, None)
