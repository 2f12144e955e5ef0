"""Delivery updates the node's instruments: attempts by reply class, delivery time, time in queue."""

from __future__ import annotations

import asyncio

from appliance.db.engine import Store
from appliance.delivery.service import DeliveryService
from appliance.policy.flow import DefaultFlow
from appliance.queue.spool import Spool
from appliance.stats.metrics import Instruments
from tests.e2e.delivery.conftest import FakeResolver, enqueue, make_config, queue_rows
from tests.support.wait import wait_until_async as until
from tests.e2e.delivery.sink import Sink


def _value(metrics: Instruments, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_attempts_latency_and_time_in_queue_are_counted(sqlite_store: Store, spool: Spool) -> None:
    metrics = Instruments()
    with Sink() as sink:
        sink.handler.rcpt_replies["nope@dest.test"] = "550 5.1.1 no such user"
        sink.handler.rcpt_replies["later@dest.test"] = "450 4.2.0 try later"
        for rcpt in ("a@dest.test", "b@dest.test", "nope@dest.test", "later@dest.test"):
            enqueue(sqlite_store, spool, rcpt)
        config = make_config(sink.port, schedule=[3600])
        service = DeliveryService(store=sqlite_store, spool=spool, config=lambda: config,
                                  flow=DefaultFlow(), resolver=FakeResolver(), stop_grace=5.0,
                                  metrics=metrics)

        async def run() -> None:
            await service.start()
            try:
                await until(lambda: len(sink.messages) == 3)  # a, b and the DSN for nope
                await until(lambda: [e.state for e in queue_rows(sqlite_store)
                                     if e.rcpt != "alice@sender.test"] == ["DEFER"])
                await until(lambda: _value(metrics, "appliance_delivery_attempts_total",
                                           transport="default", reply_class="4xx") == 1)
            finally:
                await service.stop()

        asyncio.run(run())
    assert _value(metrics, "appliance_delivery_attempts_total", transport="default",
                  reply_class="2xx") == 3
    assert _value(metrics, "appliance_delivery_attempts_total", transport="default",
                  reply_class="5xx") == 1
    assert _value(metrics, "appliance_delivery_seconds_count", transport="default") == 3
    assert _value(metrics, "appliance_time_in_queue_seconds_count", action="DELIVER") == 3
    assert _value(metrics, "appliance_time_in_queue_seconds_count", action="BOUNCE") == 1
    assert _value(metrics, "appliance_time_in_queue_seconds_count", action="DEFER") == 0
