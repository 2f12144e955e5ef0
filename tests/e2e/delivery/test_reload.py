"""DeliveryService following config revisions without a restart: workers and connection limits."""

from __future__ import annotations

import asyncio
from typing import Any

from appliance.config import revisions
from appliance.config.document import parse
from appliance.config.holder import ConfigHolder, Running
from appliance.db.engine import Store
from appliance.delivery.service import DeliveryService
from appliance.policy.flow import DefaultFlow
from appliance.queue.spool import Spool
from tests.e2e.delivery.conftest import FakeResolver, enqueue, history_rows, queue_rows
from tests.e2e.delivery.sink import Sink, SinkHandler
from tests.support.wait import wait_until_async

TEXT = """\
[node]
hostname = "gw.test"

[[transports]]
id = "default"
nexthop = "127.0.0.1:{port}"
starttls = "none"
max_connections = {max_connections}
max_messages_per_connection = 1000

[queue]
workers = {workers}
retry_schedule = [60]
poll_interval = 0.05
lease = 60
"""


class Counting(SinkHandler):
    """Records how many DATA transfers run at once."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay=delay)
        self.active = 0
        self.peak = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            return await super().handle_DATA(server, session, envelope)
        finally:
            self.active -= 1


def _holder(store: Store, text: str) -> ConfigHolder:
    with store.transaction() as s:
        rev = revisions.seed(s, file_text=text, author="test")
    return ConfigHolder(Running(revision=rev, text=text, config=parse(text)))


async def _commit(store: Store, holder: ConfigHolder, **keys: str) -> None:
    """Commit a revision that changes `keys` and offer it from another thread, as the watcher does."""
    with store.transaction() as s:
        for key, value in keys.items():
            rev = revisions.key_set(s, key=key.replace("__", "."), value=value, author="test")
        text = revisions.text_get(s, revision=rev)
    assert await asyncio.to_thread(holder.offer, rev, text), holder.problem


def _service(store: Store, spool: Spool, holder: ConfigHolder, **kw: Any) -> DeliveryService:
    service = DeliveryService(store=store, spool=spool, config=lambda: holder.config, flow=DefaultFlow(),
                              resolver=FakeResolver(), stop_grace=10.0, **kw)
    holder.subscribe(service)
    return service


def _leased(store: Store) -> int:
    return sum(1 for e in queue_rows(store) if e.lease_owner)


def test_worker_count_follows_revisions_and_retiring_workers_finish(store: Store, spool: Spool) -> None:
    with Sink(delay=1.0) as sink:
        holder = _holder(store, TEXT.format(port=sink.port, workers=2, max_connections=10))

        async def run() -> None:
            service = _service(store, spool, holder, batch_size=1)  # one entry per worker batch
            await service.start()
            try:
                assert (service.workers, service.running_workers) == (2, 2)
                await _commit(store, holder, queue__workers="5")
                await wait_until_async(lambda: service.workers == 5 and service.running_workers == 5)
                for n in range(6):
                    enqueue(store, spool, f"r{n}@dest.test")
                service.kick()
                await wait_until_async(lambda: _leased(store) == 5)  # five deliveries in flight at once
                await _commit(store, holder, queue__workers="1")
                await wait_until_async(lambda: service.workers == 1)
                assert service.running_workers > 1  # the retiring ones are finishing their batch
                await wait_until_async(lambda: not queue_rows(store))
                await wait_until_async(lambda: service.running_workers == 1)
            finally:
                await service.stop()

        asyncio.run(run())
        assert sorted(m.rcpt_tos[0] for m in sink.messages) == [f"r{n}@dest.test" for n in range(6)]
    assert [h.action for h in history_rows(store)] == ["DELIVER"] * 6  # none deferred or doubled


def test_connection_limits_follow_revisions(store: Store, spool: Spool) -> None:
    handler = Counting(delay=0.2)
    with Sink() as sink:
        sink.handler = sink._controller.handler = handler
        holder = _holder(store, TEXT.format(port=sink.port, workers=1, max_connections=1))

        async def run() -> None:
            service = _service(store, spool, holder)
            await service.start()
            try:
                for n in range(4):
                    enqueue(store, spool, f"a{n}@dest.test")
                service.kick()
                await wait_until_async(lambda: len(handler.messages) == 4)
                assert (handler.peak, len(handler.peers)) == (1, 1)  # one connection, reused
                await _commit(store, holder, transports__default__max_connections="4",
                              transports__default__max_messages_per_connection="1")
                handler.peak = 0
                for n in range(8):
                    enqueue(store, spool, f"b{n}@dest.test")
                service.kick()
                await wait_until_async(lambda: len(handler.messages) == 12)
            finally:
                await service.stop()

        asyncio.run(run())
    assert 2 <= handler.peak <= 4  # up to the new limit at once
    assert len(handler.peers) == 1 + 8  # the old idle connection was not reused; one per message now


def test_timeout_change_applies_to_the_next_connection(sqlite_store: Store, spool: Spool) -> None:
    with Sink(delay=0.6) as sink:
        holder = _holder(sqlite_store, TEXT.format(port=sink.port, workers=1, max_connections=1))

        async def run() -> None:
            service = _service(sqlite_store, spool, holder)
            await service.start()
            try:
                enqueue(sqlite_store, spool, "first@dest.test")
                service.kick()
                await wait_until_async(lambda: len(sink.messages) == 1)  # its connection stays open, idle
                await _commit(sqlite_store, holder, transports__default__timeout="0.2")
                enqueue(sqlite_store, spool, "second@dest.test")
                service.kick()
                await wait_until_async(lambda: any(e.state == "DEFER" for e in queue_rows(sqlite_store)))
            finally:
                await service.stop()

        asyncio.run(run())
    [deferred] = queue_rows(sqlite_store)
    assert deferred.rcpt == "second@dest.test" and "timed out" in deferred.error.lower()
