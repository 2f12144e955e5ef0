"""SOAP services called through Spyne's NullServer (no HTTP, no WSDL round trip), with a typed
NodeContext holding real parts: a SQLite store, the rate() engine, the config service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spyne import Fault
from spyne.context import MethodContext
from spyne.server.null import NullServer
from sqlalchemy import select

from appliance.access.levels import ADMIN, AccessLevel
from appliance.cluster.configservice import ConfigService
from appliance.cluster.shared import StoreRouter
from appliance.config import revisions
from appliance.db.engine import Store
from appliance.db.models import AuditRecord
from appliance.db.schema import upgrade
from appliance.queue.spool import Spool
from appliance.soap.app import PRINCIPAL_KEY, build_application
from appliance.soap.calls import NodeContext, Principal
from appliance.soap.services.config import ConfigService as ConfigSoap
from appliance.soap.services.stats import StatsService
from appliance.stats.rates import Rates

NOW = 1_700_000_000.0


def null_server(context: NodeContext, principal: Principal) -> Any:
    """NullServer calling as `principal` (what the HTTP gateway leaves in the WSGI environ)."""
    server = NullServer(build_application(node=context, services=(StatsService, ConfigSoap)))

    class Context(MethodContext):  # type: ignore[misc]
        def __init__(self, transport: Any, way: Any) -> None:
            super().__init__(transport, way)
            self.transport.req_env = {PRINCIPAL_KEY: principal}

    server.MethodContext = Context
    return server


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeContext]:
    base: Path = tmp_path_factory.mktemp("null")
    store = Store(f"sqlite:///{base / 'store.db'}")
    upgrade(store.engine)
    with store.transaction() as session:
        revisions.seed(session, file_text=None, clock=lambda: NOW)
    router = StoreRouter(store)
    context = NodeContext(store=store, spool=Spool(base / "spool"), serial="NULL1",
                          clock=lambda: NOW, rates=Rates(store, clock=lambda: NOW),
                          config_service=ConfigService(router, "NULL1", clock=lambda: NOW),
                          rrd_dir=base / "rrd")
    try:
        yield context
    finally:
        router.close()
        store.dispose()


ADMIN_CALLER = Principal(user="admin", level=ADMIN, remote="127.0.0.1")
READONLY_CALLER = Principal(user="viewer", level=AccessLevel(role="readonly"), remote="127.0.0.1")


def _audit(store: Store, operation: str) -> list[tuple[str, str, int]]:
    with store.transaction(read_only=True) as s:
        rows = s.scalars(select(AuditRecord).where(AuditRecord.operation == operation))
        return [(r.username, r.outcome, r.affected) for r in rows]


def test_hsl_rate_lists_and_clears_the_live_windows_of_the_context(parts: NodeContext) -> None:
    assert parts.rates is not None
    for _ in range(3):
        parts.rates.rate("null-ns", "10.0.0.1", 10, 60)
    service = null_server(parts, ADMIN_CALLER).service
    rows = service.hslRate("null-ns", "", 0, 10)
    assert [(r.entry, r.count, r.interval) for r in rows] == [("10.0.0.1", 3, 60)]
    assert service.hslRateClear("null-ns", "") == 1
    assert list(service.hslRate("null-ns", "", 0, 10) or []) == []
    assert _audit(parts.store, "hslRateClear") == [("admin", "ok", 1)]


def test_a_readonly_caller_is_refused_a_mutation_and_it_is_audited(parts: NodeContext) -> None:
    with pytest.raises(Fault) as refused:
        null_server(parts, READONLY_CALLER).service.statClear("", "", "")
    assert refused.value.faultcode == "Client.Forbidden"
    assert _audit(parts.store, "statClear") == [
        ("viewer", "fault: access denied: this user may not call statClear", 0)]


def test_config_text_set_then_get_goes_through_the_config_service(parts: NodeContext) -> None:
    service = null_server(parts, ADMIN_CALLER).service
    text = '[node]\nname = "null-node"\n'
    revision = service.configTextSet(text, "from the null server")
    assert revision >= 2
    assert 'name = "null-node"' in service.configTextGet(revision)
    assert [r.id for r in service.configRevisionLog(0, 1)] == [revision]
    with pytest.raises(Fault) as bad:
        service.configTextSet("[node\n", "broken")
    assert bad.value.faultcode.startswith("Client")
    assert 'name = "null-node"' in service.configTextGet(None)  # unchanged


def test_graph_list_reads_the_contexts_rrd_dir(parts: NodeContext) -> None:
    assert list(null_server(parts, ADMIN_CALLER).service.graphList() or []) == []
