"""Pre-delivery policy decisions acted on by DeliveryService: quarantine holds, others deliver."""

from __future__ import annotations

import asyncio

from appliance.db.engine import Store
from appliance.delivery.service import DeliveryService
from appliance.policy.flow import ACCEPT, DefaultFlow, Decision, DeliveryInfo, DeliveryOutcome, Verdict
from appliance.queue import store as q
from appliance.queue.spool import Spool
from tests.e2e.delivery.conftest import FakeClock, FakeResolver, enqueue, history_rows, make_config, queue_rows
from tests.e2e.delivery.sink import Sink
from tests.support.wait import wait_until_async


class QuarantineFlow(DefaultFlow):
    """Quarantines recipients whose local part is `hold`; remembers post-delivery outcomes."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, str]] = []

    def pre_delivery(self, entry: DeliveryInfo) -> Verdict:
        if entry.recipient.startswith("hold@"):
            return Verdict(decision=Decision.QUARANTINE, quarantine="suspect")
        return ACCEPT

    def post_delivery(self, entry: DeliveryInfo, outcome: DeliveryOutcome) -> None:
        self.outcomes.append((entry.recipient, outcome.action))


def test_pre_delivery_quarantine_holds_and_is_not_delivered(store: Store, spool: Spool) -> None:
    flow = QuarantineFlow()
    with Sink() as sink:
        config = make_config(sink.port)
        held_id, ok_id = enqueue(store, spool, "hold@dest.test", "ok@dest.test")
        clock = FakeClock()  # after the enqueue: the entries are due at once

        async def run() -> None:
            service = DeliveryService(store=store, spool=spool, config=lambda: config, flow=flow,
                                      resolver=FakeResolver(), stop_grace=5.0, clock=clock)
            await service.start()
            try:
                await wait_until_async(lambda: len(history_rows(store)) == 2)
                polled = clock.reads
                # Six more claims (each reads the clock once): a HOLD entry is never taken again.
                await wait_until_async(lambda: clock.reads >= polled + 6, what="six more claims")
            finally:
                await service.stop()

        asyncio.run(run())
        assert [m.rcpt_tos for m in sink.messages] == [["ok@dest.test"]]
    [held] = queue_rows(store)
    assert (held.id, held.state, held.action, held.quarantine, held.lease_owner) == (
        held_id, "HOLD", "QUARANTINE", "suspect", "")
    assert spool.read(held.path)  # the body stays for a later release
    hist = {h.queueid: h for h in history_rows(store)}
    assert (hist[held_id].action, hist[held_id].quarantine) == ("QUARANTINE", "suspect")
    assert hist[ok_id].action == "DELIVER"
    assert sorted(flow.outcomes) == [("hold@dest.test", "QUARANTINE"), ("ok@dest.test", "DELIVER")]
    with store.transaction() as s:  # an operator's retry releases it to delivery
        q.retry(s, held_id, now=held.ts)
    assert queue_rows(store)[0].state == "ACTIVE"
