"""dkimKeyList, dkimKeyGenerate and dkimKeyDelete through Spyne's NullServer, with a real key
store and SQLite store: records returned, faults for hostile names, admins only, audited."""

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
from appliance.config.schema import Config, DkimDomain, DkimSection
from appliance.db.engine import Store
from appliance.db.models import AuditRecord
from appliance.db.schema import upgrade
from appliance.mailauth.keys import KeyStore
from appliance.queue.spool import Spool
from appliance.soap.app import PRINCIPAL_KEY, build_application
from appliance.soap.calls import NodeContext, Principal
from appliance.soap.services.dkim import DkimService

ADMIN_CALLER = Principal(user="admin", level=ADMIN, remote="127.0.0.1")
READONLY_CALLER = Principal(user="viewer", level=AccessLevel(role="readonly"), remote="127.0.0.1")


def _service(context: NodeContext, principal: Principal) -> Any:
    server = NullServer(build_application(node=context, services=(DkimService,)))

    class Context(MethodContext):  # type: ignore[misc]
        def __init__(self, transport: Any, way: Any) -> None:
            super().__init__(transport, way)
            self.transport.req_env = {PRINCIPAL_KEY: principal}

    server.MethodContext = Context
    return server.service


@pytest.fixture
def context(tmp_path: Path) -> Iterator[NodeContext]:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(store.engine)
    config = Config(dkim=DkimSection(domains={"rot.example": DkimDomain(selector="new")}))
    try:
        yield NodeContext(store=store, spool=Spool(tmp_path / "spool"), serial="NULL1",
                          dkim_keys=KeyStore(tmp_path / "keys" / "dkim"), config=lambda: config)
    finally:
        store.dispose()


def _audit(store: Store, operation: str) -> list[str]:
    with store.transaction(read_only=True) as s:
        return [r.outcome for r in s.scalars(select(AuditRecord).where(AuditRecord.operation == operation))]


def test_generate_list_delete(context: NodeContext) -> None:
    admin = _service(context, ADMIN_CALLER)
    record = admin.dkimKeyGenerate("Example.com", "s1", "rsa")
    assert record.startswith('s1._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; p=') and '" "' in record
    admin.dkimKeyGenerate("rot.example", "old", "ed25519")
    admin.dkimKeyGenerate("rot.example", "new", "ed25519")
    rows = {(k.domain, k.selector): (k.algorithm, k.active, k.dnsrecord) for k in admin.dkimKeyList()}
    assert rows[("example.com", "s1")] == ("rsa", True, record)
    assert rows[("rot.example", "new")][1] and not rows[("rot.example", "old")][1]  # the config's choice
    admin.dkimKeyDelete("example.com", "s1")
    assert ("example.com", "s1") not in {(k.domain, k.selector) for k in admin.dkimKeyList()}
    assert _audit(context.store, "dkimKeyGenerate") == ["ok", "ok", "ok"]
    assert _audit(context.store, "dkimKeyDelete") == ["ok"]


@pytest.mark.parametrize(("args", "code"), [
    (("../../etc", "s1", "rsa"), "Client.InvalidInput"),
    (("example.com", "../../s1", "rsa"), "Client.InvalidInput"),
    (("example.com", "s2", "dsa"), "Client.InvalidInput"),
    (("example.com", "s1", "ed25519"), "Client.Conflict"),
    ((None, "s1", "rsa"), "Client.InvalidInput"),
])
def test_bad_generate_faults_audited_and_writes_nothing(context: NodeContext, args: tuple[Any, ...],
                                                        code: str) -> None:
    admin = _service(context, ADMIN_CALLER)
    admin.dkimKeyGenerate("example.com", "s1", "rsa")
    assert context.dkim_keys is not None
    before = sorted(str(p) for p in context.dkim_keys.root.rglob("*"))
    with pytest.raises(Fault) as info:
        admin.dkimKeyGenerate(*args)
    assert info.value.faultcode == code
    assert sorted(str(p) for p in context.dkim_keys.root.rglob("*")) == before
    assert _audit(context.store, "dkimKeyGenerate")[-1].startswith("fault: ")


def test_readonly_may_list_but_not_change(context: NodeContext) -> None:
    _service(context, ADMIN_CALLER).dkimKeyGenerate("example.com", "s1", "ed25519")
    viewer = _service(context, READONLY_CALLER)
    assert [k.selector for k in viewer.dkimKeyList()] == ["s1"]
    for call in (lambda: viewer.dkimKeyGenerate("example.com", "s2", "rsa"),
                 lambda: viewer.dkimKeyDelete("example.com", "s1")):
        with pytest.raises(Fault) as info:
            call()
        assert info.value.faultcode == "Client.Forbidden"
    assert [k.selector for k in viewer.dkimKeyList()] == ["s1"]
