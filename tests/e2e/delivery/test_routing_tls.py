"""STARTTLS (trustme certificates) and MX routing (a fake resolver pointing at loopback sinks)."""

from __future__ import annotations

import asyncio
import ssl

import pytest
import trustme

from appliance.db.engine import Store
from appliance.delivery.outbound import SmtpConnector
from appliance.delivery.service import DeliveryService
from appliance.policy.flow import DefaultFlow
from appliance.queue.spool import Spool
from tests.e2e.delivery.conftest import FakeResolver, enqueue, history_rows, make_config, queue_rows
from tests.e2e.delivery.sink import Sink
from tests.support.wait import wait_until_async


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    return ctx


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def _run(store: Store, spool: Spool, config, done, **kw) -> DeliveryService:  # type: ignore[no-untyped-def]
    kw.setdefault("resolver", FakeResolver())
    service = DeliveryService(store=store, spool=spool, config=lambda: config, flow=DefaultFlow(),
                              stop_grace=5.0, **kw)

    async def run() -> None:
        await service.start()
        try:
            await wait_until_async(done)
        finally:
            await service.stop()

    asyncio.run(run())
    return service


def test_starttls_required_and_verified(sqlite_store: Store, spool: Spool, ca: trustme.CA) -> None:
    with Sink(tls_context=_server_context(ca)) as sink:
        config = make_config(None, nexthop=f"localhost:{sink.port}", starttls="require", tls_verify=True)
        enqueue(sqlite_store, spool, "bob@dest.test")
        _run(sqlite_store, spool, config, lambda: len(sink.messages) == 1,
             connector=SmtpConnector(verify_context=_client_context(ca)))
        assert sink.messages[0].tls


def test_opportunistic_starttls_encrypts_without_verification(sqlite_store: Store, spool: Spool, ca: trustme.CA) -> None:
    with Sink(tls_context=_server_context(ca)) as sink:
        config = make_config(sink.port, starttls="opportunistic")
        enqueue(sqlite_store, spool, "bob@dest.test")
        _run(sqlite_store, spool, config, lambda: len(sink.messages) == 1)
        assert sink.messages[0].tls


def test_opportunistic_starttls_falls_back_to_plain_text(sqlite_store: Store, spool: Spool) -> None:
    with Sink() as sink:
        config = make_config(sink.port, starttls="opportunistic")
        enqueue(sqlite_store, spool, "bob@dest.test")
        _run(sqlite_store, spool, config, lambda: len(sink.messages) == 1)
        assert not sink.messages[0].tls


def test_required_tls_that_is_not_offered_defers(sqlite_store: Store, spool: Spool) -> None:
    with Sink() as sink:
        config = make_config(sink.port, starttls="require")
        enqueue(sqlite_store, spool, "bob@dest.test")
        _run(sqlite_store, spool, config, lambda: queue_rows(sqlite_store)[0].state == "DEFER")
        assert sink.messages == []
        assert "TLS is required" in queue_rows(sqlite_store)[0].error


def test_untrusted_certificate_defers_when_verifying(sqlite_store: Store, spool: Spool, ca: trustme.CA) -> None:
    with Sink(tls_context=_server_context(ca)) as sink:
        config = make_config(None, nexthop=f"localhost:{sink.port}", starttls="require", tls_verify=True)
        enqueue(sqlite_store, spool, "bob@dest.test")
        _run(sqlite_store, spool, config, lambda: queue_rows(sqlite_store)[0].state == "DEFER",
             connector=SmtpConnector(verify_context=_client_context(trustme.CA())))
        assert sink.messages == []
        assert "CERTIFICATE_VERIFY_FAILED" in queue_rows(sqlite_store)[0].error


def test_mx_routing_by_preference_with_fallbacks(sqlite_store: Store, spool: Spool) -> None:
    with Sink() as sink:
        # 127.0.0.2 is loopback too but nothing listens there: the preferred MX is down.
        resolver = FakeResolver(
            mx={"dest.test": [(20, "backup.dest.test"), (10, "mx.dest.test")], "nomx.test": [],
                "sender.test": [(10, "backup.dest.test")]},
            hosts={"mx.dest.test": ["127.0.0.2"], "backup.dest.test": ["127.0.0.1"],
                   "nomx.test": ["127.0.0.1"]},
        )
        config = make_config(None, port=sink.port)
        enqueue(sqlite_store, spool, "bob@dest.test", "carol@nomx.test", "dave@nowhere.test")
        _run(sqlite_store, spool, config, lambda: len(history_rows(sqlite_store)) == 4
             and not queue_rows(sqlite_store), resolver=resolver)
        assert resolver.queries.index("A mx.dest.test") < resolver.queries.index("A backup.dest.test")
        assert "A nomx.test" in resolver.queries  # no MX: the domain itself (RFC 5321 section 5.1)
        delivered = sorted(r for m in sink.messages for r in m.rcpt_tos)
    assert delivered == ["alice@sender.test", "bob@dest.test", "carol@nomx.test"]  # + the DSN
    hist = {h.rcpt: h for h in history_rows(sqlite_store)}
    assert hist["dave@nowhere.test"].action == "BOUNCE"
    assert "does not exist" in hist["dave@nowhere.test"].error
