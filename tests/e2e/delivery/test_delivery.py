"""DeliveryService against a loopback aiosmtpd sink: reuse, retries, bounces, restart."""

from __future__ import annotations

import asyncio
import email
import logging

import pytest

from appliance.db.engine import Store
from appliance.delivery.service import DeliveryService
from appliance.policy.flow import DefaultFlow
from appliance.queue import store as q
from appliance.queue.spool import Spool
from tests.e2e.delivery.conftest import (
    FakeClock, FakeResolver, enqueue, history_rows, make_config, queue_rows,
)
from tests.e2e.delivery.sink import Sink
from tests.support.wait import wait_until_async


def _service(store: Store, spool: Spool, config, **kw) -> DeliveryService:  # type: ignore[no-untyped-def]
    kw.setdefault("resolver", FakeResolver())
    return DeliveryService(store=store, spool=spool, config=lambda: config, flow=DefaultFlow(),
                           stop_grace=5.0, **kw)


def test_delivers_everything_reusing_connections(store: Store, spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="appliance.delivery")
    with Sink() as sink:
        config = make_config(sink.port, max_connections=2, max_messages_per_connection=1000)
        ids = [i for n in range(30) for i in enqueue(store, spool, f"r{n}@dest.test")]
        two = enqueue(store, spool, "x@dest.test", "y@dest.test")

        async def run() -> None:
            service = _service(store, spool, config)
            await service.start()
            try:
                await wait_until_async(lambda: len(sink.messages) == 31)
                await wait_until_async(lambda: not queue_rows(store))
            finally:
                await service.stop()
            assert service.pool.opened <= 2 * config.queue.workers

        asyncio.run(run())
        assert len(sink.handler.peers) <= 2 * config.queue.workers  # reused, not one per message
        assert sorted(m.rcpt_tos[0] for m in sink.messages if len(m.rcpt_tos) == 1) == sorted(
            f"r{n}@dest.test" for n in range(30))
        [pair] = [m for m in sink.messages if len(m.rcpt_tos) == 2]  # one transaction, two RCPTs
        assert pair.rcpt_tos == ["x@dest.test", "y@dest.test"]
        assert all(m.mail_from == "alice@sender.test" and b"Hello there." in m.content for m in sink.messages)
    hist = history_rows(store)
    assert sorted(h.queueid for h in hist) == sorted(ids + two)
    assert {h.action for h in hist} == {"DELIVER"}
    assert all(h.transfertime > 0 and h.error.startswith("250") for h in hist)
    assert spool.all_paths() == []
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("delivered"))
    assert f"{hist[0].msgid}:{hist[0].queueid}" in "\n".join(r.getMessage() for r in caplog.records)
    assert "127.0.0.1" in line


def test_connection_carries_at_most_max_messages(sqlite_store: Store, spool: Spool) -> None:
    with Sink() as sink:
        config = make_config(sink.port, workers=1, max_connections=1, max_messages_per_connection=3)
        for n in range(10):
            enqueue(sqlite_store, spool, f"r{n}@dest.test")

        async def run() -> None:
            service = _service(sqlite_store, spool, config)
            await service.start()
            try:
                await wait_until_async(lambda: len(sink.messages) == 10)
            finally:
                await service.stop()

        asyncio.run(run())
        assert len(sink.handler.peers) == 4  # ceil(10 / 3) connections, one at a time


def test_temporary_failure_defers_then_retry_delivers(sqlite_store: Store, spool: Spool) -> None:
    clock = FakeClock()
    with Sink() as sink:
        sink.handler.data_replies = ["451 4.3.0 try again later"]
        config = make_config(sink.port, schedule=[60, 300])
        [qid] = enqueue(sqlite_store, spool, "bob@dest.test", now=clock.now)

        async def run() -> None:
            service = _service(sqlite_store, spool, config, clock=clock)
            await service.start()
            try:
                await wait_until_async(lambda: any(r.state == "DEFER" for r in queue_rows(sqlite_store)))
                [row] = queue_rows(sqlite_store)
                assert (row.retries, row.error, row.next_retry) == (1, "451 4.3.0 try again later", clock.now + 60)
                assert row.lease_owner == ""
                polled = clock.reads
                await wait_until_async(lambda: clock.reads >= polled + 6, what="six more claims")
                # ... and none took the entry: not due yet, so no second attempt
                assert sink.messages == [] and queue_rows(sqlite_store)[0].retries == 1
                clock.advance(61)
                service.kick()
                await wait_until_async(lambda: not queue_rows(sqlite_store))
            finally:
                await service.stop()

        asyncio.run(run())
        assert [m.rcpt_tos for m in sink.messages] == [["bob@dest.test"]]
    assert [(h.action, h.queueid) for h in history_rows(sqlite_store)] == [("DEFER", qid), ("DELIVER", qid)]
    assert history_rows(sqlite_store)[0].error == "451 4.3.0 try again later"


def _dsn_parts(raw: bytes) -> tuple[email.message.Message, list[email.message.Message]]:
    msg = email.message_from_bytes(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    return msg, parts[1].get_payload()


def test_permanent_failure_bounces_a_dsn_to_the_sender(store: Store, spool: Spool) -> None:
    with Sink() as sink:
        sink.handler.rcpt_replies = {"bob@dest.test": "550 5.1.1 <bob@dest.test>: no such user"}
        config = make_config(sink.port)
        enqueue(store, spool, "bob@dest.test", "carol@dest.test", subject="Quarterly report")

        async def run() -> None:
            service = _service(store, spool, config)
            await service.start()
            try:
                await wait_until_async(lambda: len(sink.messages) == 2 and not queue_rows(store))
            finally:
                await service.stop()

        asyncio.run(run())
        delivered, dsn = sorted(sink.messages, key=lambda m: m.mail_from, reverse=True)
        assert delivered.rcpt_tos == ["carol@dest.test"]
        assert (dsn.mail_from, dsn.rcpt_tos) == ("<>", ["alice@sender.test"])  # MAIL FROM:<>
    msg, status = _dsn_parts(dsn.content)
    assert msg["Subject"] == "Undelivered Mail Returned to Sender: Quarterly report"
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@gw.test>"
    assert status[0]["Reporting-MTA"] == "dns; gw.test" and status[0]["Arrival-Date"]
    assert [(b["Final-Recipient"], b["Action"], b["Status"]) for b in status[1:]] == [
        ("rfc822; bob@dest.test", "failed", "5.1.1")]
    assert status[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@dest.test>: no such user"
    assert status[1]["Remote-MTA"] == "dns; 127.0.0.1"
    assert "Subject: Quarterly report" in msg.get_payload()[2].get_payload()
    hist = history_rows(store)
    assert [(h.rcpt, h.action) for h in hist if not h.is_dsn] == [("carol@dest.test", "DELIVER"), ("bob@dest.test", "BOUNCE")]
    assert [(h.rcpt, h.action, h.sender) for h in hist if h.is_dsn] == [("alice@sender.test", "DELIVER", "")]


def test_lifetime_expiry_bounces_with_delivery_time_expired(sqlite_store: Store, spool: Spool) -> None:
    clock = FakeClock()
    with Sink() as sink:
        sink.handler.data_replies = ["451 4.3.0 still busy"]
        config = make_config(sink.port, lifetime=3600)
        [qid] = enqueue(sqlite_store, spool, "bob@dest.test", received=clock.now - 3601, now=clock.now)

        async def run() -> None:
            service = _service(sqlite_store, spool, config, clock=clock)
            await service.start()
            try:
                await wait_until_async(lambda: len(sink.messages) == 1 and not queue_rows(sqlite_store))
            finally:
                await service.stop()

        asyncio.run(run())
        [dsn] = sink.messages
    _, status = _dsn_parts(dsn.content)
    assert status[1]["Status"] == "4.4.7" and status[1]["Action"] == "failed"
    assert "451 4.3.0 still busy" in status[1]["Diagnostic-Code"]
    bounce = [h for h in history_rows(sqlite_store) if h.queueid == qid]
    assert [h.action for h in bounce] == ["BOUNCE"] and "lifetime" in bounce[0].error


def test_failing_bounce_is_not_bounced_again(sqlite_store: Store, spool: Spool) -> None:
    with Sink() as sink:
        sink.handler.rcpt_replies = {"bob@dest.test": "550 5.1.1 no such user",
                                     "alice@sender.test": "550 5.1.1 no such sender either"}
        config = make_config(sink.port)
        enqueue(sqlite_store, spool, "bob@dest.test")
        clock = FakeClock()  # after the enqueue: the entry is due at once

        async def run() -> None:
            service = _service(sqlite_store, spool, config, clock=clock)
            await service.start()
            try:
                await wait_until_async(lambda: len(history_rows(sqlite_store)) == 2)
                polled = clock.reads
                # Six more claims (each reads the clock once) and nothing else may appear.
                await wait_until_async(lambda: clock.reads >= polled + 6, what="six more claims")
            finally:
                await service.stop()

        asyncio.run(run())
        assert sink.messages == []
    hist = history_rows(sqlite_store)
    assert [(h.action, h.is_dsn, h.sender) for h in hist] == [
        ("BOUNCE", 0, "alice@sender.test"), ("BOUNCE", 1, "")]
    assert queue_rows(sqlite_store) == [] and spool.all_paths() == []


def test_restart_mid_queue_resumes(sqlite_store: Store, spool: Spool) -> None:
    with Sink(delay=0.01) as sink:
        config = make_config(sink.port, workers=1, max_connections=1)
        for n in range(40):
            enqueue(sqlite_store, spool, f"r{n}@dest.test")
        # Entries a crashed process had leased come back at start.
        with sqlite_store.transaction() as s:
            crashed = q.claim(s, owner="dead-process", now=1e12, lease=1e9, limit=3)

        async def first_run() -> None:
            service = _service(sqlite_store, spool, config, batch_size=5)
            await service.start()
            try:
                await wait_until_async(lambda: len(sink.messages) >= 5)
            finally:
                await service.stop()

        asyncio.run(first_run())
        left = queue_rows(sqlite_store)
        assert 0 < len(left) < 40
        assert all(r.lease_owner == "" and r.lease_until == 0 for r in left)  # released at stop

        async def second_run() -> None:
            service = _service(sqlite_store, spool, config, batch_size=5)
            await service.start()
            try:
                await wait_until_async(lambda: not queue_rows(sqlite_store))
            finally:
                await service.stop()

        asyncio.run(second_run())
        got = sorted(m.rcpt_tos[0] for m in sink.messages)
    assert sorted(set(got)) == sorted(f"r{n}@dest.test" for n in range(40))
    assert {e.rcpt for e in crashed} <= set(got)
    assert len([h for h in history_rows(sqlite_store) if h.action == "DELIVER"]) == 40
