"""The trash, bulk previews and drain jobs over SOAP (zeep) and through the fan-out client,
against two real SOAP servers (the gateway, Spyne and cheroot) over SQLite stores."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
from sqlalchemy import select
from zeep.exceptions import Fault
from zeep.helpers import serialize_object

from appliance.access.users import add_user
from appliance.db.engine import Store
from appliance.db.models import AuditRecord
from appliance.db.schema import upgrade
from appliance.queue import store as queue_store
from appliance.queue.spool import Spool
from appliance.soap.calls import NodeContext
from appliance.soap.server import Listen, SoapServer
from appliance.types import Envelope, NewMessage, QueueState
from appliance_client.cluster import Cluster
from appliance_client.node import NodeSpec

PASSWORDS = {"admin": "admin-pw", "viewer": "viewer-pw", "tenant": "tenant-pw"}
TENANT = "to~%@tenant.example"
NEW_OPERATIONS = ["mailTrash", "mailTrashRestore", "mailTrashPurge", "mailQueueDrain",
                  "mailQueueJobList", "mailQueueJobCancel", "mailQueueBulkPreview"]
TENANT_OPERATIONS = ["mailQueue", "mailQueueCount", "mailQueueDeleteBulk", "mailQueueDelete",
                     *NEW_OPERATIONS]


@dataclass
class Server:
    server: SoapServer
    store: Store
    spool: Spool
    root: Path

    def queue(self, rcpts: tuple[str, ...], *, state: QueueState = QueueState.HOLD,
              metadata: dict[str, str] | None = None, subject: str = "hello") -> list[int]:
        msgid = str(uuid.uuid4())
        data = f"Subject: {subject}\r\n\r\nbody of {msgid}\r\n".encode()
        path = self.spool.write(msgid, data)
        msg = NewMessage(msgid=msgid, envelope=Envelope(sender="alice@sender.example",
                         recipients=rcpts, listener="inbound", client_ip="192.0.2.7",
                         helo="client.example"), path=path, size=len(data), subject=subject,
                         received=time.time() - 30, transport="default", state=state,
                         metadata=metadata or {})
        with self.store.transaction() as session:
            return queue_store.enqueue(session, msg, now=time.time())

    def client(self, user: str = "admin") -> Any:
        session = requests.Session()
        session.auth = (user, PASSWORDS[user])
        return zeep.Client(self.server.url + "?wsdl",
                           transport=zeep.Transport(session=session)).service

    def spec(self, name: str, user: str = "admin") -> NodeSpec:
        return NodeSpec(url=self.server.url, username=user, password=PASSWORDS[user], name=name)


def _start(root: Path, serial: str) -> Server:
    store = Store(f"sqlite:///{root / 'store.db'}")
    upgrade(store.engine)
    with store.transaction() as session:
        add_user(session, "admin", PASSWORDS["admin"], role="admin")
        add_user(session, "viewer", PASSWORDS["viewer"], role="readonly")
        add_user(session, "tenant", PASSWORDS["tenant"], role="custom",
                 operations=TENANT_OPERATIONS, restriction=TENANT)
    spool = Spool(root / "spool")
    context = NodeContext(store=store, spool=spool, serial=serial, hostname="node.test")
    server = SoapServer(context, Listen.parse("http://127.0.0.1:0"), max_request_bytes=1 << 22)
    server.start()
    return Server(server=server, store=store, spool=spool, root=root)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    made = [_start(tmp_path_factory.mktemp(f"trash{i}"), f"SERIAL-{i}") for i in range(2)]
    yield made
    for s in made:
        s.server.stop()
        s.store.dispose()


@pytest.fixture
def one(servers: list[Server]) -> Iterator[Server]:
    """The first server, emptied of queue and trash after the test."""
    yield servers[0]
    _clear(servers[0])


def _clear(server: Server) -> None:
    admin = server.client()
    admin.mailQueueDeleteBulk(filter="")
    admin.mailTrashPurge(filter="")


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    items = value.item if hasattr(value, "item") else value
    return list(items or [])


def _queue_state(server: Server, admin: Any) -> dict[int, dict[str, Any]]:
    """Every queue entry's every wire field, and its body bytes read back over fileRead."""
    page = admin.mailQueue(filter="", offset=0, limit=10000)
    items = [serialize_object(i) for i in _items(page.result if hasattr(page, "result") else page)]
    bodies: dict[str, bytes] = {}
    for item in items:
        path = item["msgpath"]
        if path not in bodies:
            bodies[path] = bytes(admin.fileRead(file=path, offset=0, size=1 << 20).data)
        item["body"] = bodies[path]
    return {int(i["id"]): i for i in items}


def test_bulk_delete_of_1000_entries_is_restored_exactly(one: Server) -> None:
    states = [QueueState.HOLD, QueueState.DEFER, QueueState.ACTIVE]
    for m in range(100):
        ids = one.queue(tuple(f"r{j}@bulk{m % 7}.example" for j in range(10)),
                        state=states[m % 3], metadata={"batch": str(m), "kind": "bulk"},
                        subject=f"message {m}")
        with one.store.transaction() as session:
            for k, entry_id in enumerate(ids[:3]):
                entry = queue_store.get_entry(session, entry_id)
                entry.retries, entry.error, entry.next_retry = k + 1, f"451 try {k}", 2e9 + k
    one.queue(("keep@other.example",))
    admin = one.client()
    before = _queue_state(one, admin)
    assert len(before) == 1001

    assert admin.mailQueueDeleteBulk(filter="to~%@bulk%") == 1000
    assert admin.mailQueueCount(filter="") == 1
    page = admin.mailTrash(filter="deletedby=admin", offset=0, limit=10000,
                           options={"totalhits": True})
    assert page.totalhits == 1000
    assert {i.msgdeletedby for i in _items(page.result)} == {"admin"}
    assert admin.mailTrash(filter="queue=DEFER retries=2", offset=0, limit=10,
                           options={"totalhits": True}).totalhits == 33
    assert admin.mailHistory(filter="action=DELETE", offset=0, limit=1,
                             options={"totalhits": True}).totalhits == 1000

    assert admin.mailTrashRestore(filter="to~%.example") == 1000
    assert _queue_state(one, admin) == before  # every field, the same ids, the bodies
    assert admin.mailHistory(filter="action=RESTORE", offset=0, limit=1,
                             options={"totalhits": True}).totalhits == 1000
    assert admin.mailTrash(filter="", offset=0, limit=10, options={"totalhits": True}).totalhits == 0
    with one.store.transaction(read_only=True) as session:
        rows = list(session.execute(select(AuditRecord.operation, AuditRecord.affected,
                                           AuditRecord.outcome).order_by(AuditRecord.id.desc())
                                    .limit(2)))
    assert [tuple(r) for r in rows] == [("mailTrashRestore", 1000, "ok"),
                                       ("mailQueueDeleteBulk", 1000, "ok")]


def test_single_delete_goes_to_the_trash_too(one: Server) -> None:
    (entry_id,) = one.queue(("solo@one.example",), metadata={"k": "v"})
    admin = one.client()
    before = _queue_state(one, admin)
    admin.mailQueueDelete(id=entry_id)
    (item,) = _items(admin.mailTrash(filter=f"queueid={entry_id}", offset=0, limit=10).result)
    assert item.msgdeletedby == "admin" and item.msgqueue == "HOLD" and item.msgdeleted > 0
    assert admin.mailTrashRestore(filter=f"messageid={item.msgid}") == 1
    assert _queue_state(one, admin) == before


def test_preview_changes_nothing(one: Server) -> None:
    for m in range(4):
        one.queue((f"a{m}@prev.example", f"b{m}@prev.example", f"c{m}@prev.example"),
                  state=QueueState.DEFER)
    admin = one.client()
    before = _queue_state(one, admin)
    audit_before = _audit_count(one)
    assert admin.mailQueueDeleteBulk(filter="to~%@prev.example", preview=True) == 12
    assert admin.mailQueueBounceBulk(filter="to~a%", preview=True) == 4
    assert admin.mailQueueHoldBulk(filter="", preview=True) == 12
    assert admin.mailQueueRetryBulk(filter="to~%@prev.example", duplicate=True, preview=True) == 12
    shown = admin.mailQueueBulkPreview(filter="to~%@prev.example", action="delete", limit=None)
    assert shown.result == 12
    sample = _items(shown.sample)
    assert len(sample) == 10 and [i.id for i in sample] == sorted(before)[:10]
    assert admin.mailTrashRestore(filter="", preview=True) == 0
    assert _queue_state(one, admin) == before
    assert admin.mailTrash(filter="", offset=0, limit=1, options={"totalhits": True}).totalhits == 0
    assert _audit_count(one) == audit_before + 5  # a preview is audited (0 affected)
    with pytest.raises(Fault, match="action must be one of"):
        admin.mailQueueBulkPreview(filter="", action="explode", limit=3)
    with pytest.raises(Fault, match="unknown field"):
        admin.mailQueueDeleteBulk(filter="nosuch=1", preview=True)
    # Without the flag the old response shape and behaviour: a plain count.
    assert admin.mailQueueHoldBulk(filter="to~%@prev.example") == 12


def _audit_count(server: Server) -> int:
    with server.store.transaction(read_only=True) as session:
        return len(list(session.scalars(select(AuditRecord.id))))


def test_purge_removes_entries_and_bodies_for_good(one: Server) -> None:
    gone = one.queue(("p1@purge.example", "p2@purge.example"))
    kept = one.queue(("k@purge.example",))
    admin = one.client()
    paths = {i.id: i.msgpath for i in _items(admin.mailQueue(filter="", offset=0, limit=100).result)}
    assert admin.mailQueueDeleteBulk(filter="to~%@purge.example") == 3
    assert admin.mailTrashPurge(filter="to~p1%") == 1
    assert (one.spool.root / paths[gone[0]]).exists()  # p2@ (trashed) still needs the body
    assert admin.mailTrashPurge(filter="to~p%") == 1
    assert not (one.spool.root / paths[gone[0]]).exists()
    assert (one.spool.root / paths[kept[0]]).exists()
    assert admin.mailTrashRestore(filter="to~p%") == 0
    assert [i.id for i in _items(admin.mailTrash(filter="", offset=0, limit=10).result)] == kept
    assert admin.mailTrashPurge(filter="") == 1
    assert not any((one.spool.root / p).exists() for p in paths.values())
    assert admin.mailHistory(filter=f"queueid={gone[0]}", offset=0, limit=10,
                             options={"totalhits": True}).totalhits == 1  # the DELETE row


def test_drain_job_list_and_cancel(one: Server) -> None:
    one.queue(tuple(f"d{j}@drain.example" for j in range(5)))
    admin = one.client()
    job_id = admin.mailQueueDrain(filter="to~%@drain.example", action="retry", per_minute=1)
    (job,) = [j for j in _items(admin.mailQueueJobList()) if j.id == job_id]
    assert (job.state, job.done, job.remaining, job.per_minute, job.createdby) == (
        "RUNNING", 0, 5, 1, "admin")
    assert job.eta == 300.0
    with pytest.raises(Fault, match="no queue job"):
        one.client("tenant").mailQueueJobCancel(id=job_id)  # not its job
    admin.mailQueueJobCancel(id=job_id)
    (job,) = [j for j in _items(admin.mailQueueJobList()) if j.id == job_id]
    assert job.state == "CANCELLED" and job.finished > 0
    with pytest.raises(Fault, match="not running"):
        admin.mailQueueJobCancel(id=job_id)
    for bad, match in (({"action": "hold", "per_minute": 5}, "drain action"),
                       ({"action": "retry", "per_minute": 0}, "per_minute"),
                       ({"action": "retry", "per_minute": None}, "per_minute is required")):
        with pytest.raises(Fault, match=match):
            admin.mailQueueDrain(filter="", **bad)
    with pytest.raises(Fault, match="unknown field"):
        admin.mailQueueDrain(filter="bogus=1", action="retry", per_minute=5)


def test_readonly_users_are_refused_every_change(one: Server) -> None:
    one.queue(("v@ro.example",))
    admin, viewer = one.client(), one.client("viewer")
    admin.mailQueueDeleteBulk(filter="")
    job_id = admin.mailQueueDrain(filter="", action="retry", per_minute=1)
    for call in (lambda: viewer.mailTrashRestore(filter=""),
                 lambda: viewer.mailTrashPurge(filter=""),
                 lambda: viewer.mailTrashRestore(filter="", preview=True),
                 lambda: viewer.mailQueueDeleteBulk(filter="", preview=True),
                 lambda: viewer.mailQueueDrain(filter="", action="delete", per_minute=5),
                 lambda: viewer.mailQueueJobCancel(id=job_id)):
        with pytest.raises(Fault, match="access denied|not allowed"):
            call()
    assert len(_items(viewer.mailTrash(filter="", offset=0, limit=10).result)) == 1
    assert any(j.id == job_id for j in _items(viewer.mailQueueJobList()))
    admin.mailQueueJobCancel(id=job_id)


def test_restricted_users_see_and_touch_only_their_own(one: Server) -> None:
    mine = one.queue(("t1@tenant.example", "t2@tenant.example"))
    theirs = one.queue(("o@other.example",))
    admin, tenant = one.client(), one.client("tenant")
    assert tenant.mailQueueDeleteBulk(filter="") == 2
    admin.mailQueueDelete(id=theirs[0])
    listed = _items(tenant.mailTrash(filter="", offset=0, limit=100).result)
    assert sorted(i.id for i in listed) == mine
    assert tenant.mailTrashRestore(filter="", preview=True) == 2
    assert tenant.mailTrashPurge(filter=f"queueid={theirs[0]}") == 0
    assert tenant.mailTrashRestore(filter="") == 2
    assert sorted(i.id for i in _items(admin.mailQueue(filter="", offset=0, limit=10).result)) == mine
    assert [i.id for i in _items(admin.mailTrash(filter="", offset=0, limit=10).result)] == theirs
    job_id = tenant.mailQueueDrain(filter="", action="delete", per_minute=1)
    (job,) = _items(tenant.mailQueueJobList())  # only its own jobs
    assert job.id == job_id and job.remaining == 2
    admin_job = admin.mailQueueDrain(filter="", action="retry", per_minute=1)
    assert [j.id for j in _items(tenant.mailQueueJobList())] == [job_id]
    tenant.mailQueueJobCancel(id=job_id)
    admin.mailQueueJobCancel(id=admin_job)
    with pytest.raises(Fault, match="deleted"):  # a trash-only field on the queue
        tenant.mailQueueDeleteBulk(filter="deleted>0", preview=True)


def test_the_fanout_client_merges_trash_and_acts_per_node(servers: list[Server]) -> None:
    ids = {}
    for i, server in enumerate(servers):
        ids[i] = server.queue(tuple(f"f{j}@fan.example" for j in range(i + 2)))
    cluster = Cluster([servers[0].spec("n0"), servers[1].spec("n1")])
    try:
        previews, errors = cluster.bulk_preview("delete", filter="to~%@fan.example", limit=2)
        assert not errors
        assert [(p.node, p.count, len(p.sample)) for p in previews] == [("n0", 2, 2), ("n1", 3, 2)]
        assert cluster.bulk("delete", filter="to~%@fan.example", preview=True).values == {
            "n0": 2, "n1": 3}
        assert cluster.bulk("delete", filter="to~%@fan.example").values == {"n0": 2, "n1": 3}
        page = cluster.trash(filter="to~%@fan.example", limit=3)
        assert page.totals == {"n0": 2, "n1": 3} and len(page.items) == 3
        rest = cluster.trash(filter="to~%@fan.example", limit=3, cursor=page.cursor)
        assert len(rest.items) == 2
        seen = sorted((label, item.id) for label, item in page.items + rest.items)
        assert seen == sorted([("n0", i) for i in ids[0]] + [("n1", i) for i in ids[1]])
        assert cluster.trash_restore(filter="to~f0%", preview=True).values == {"n0": 1, "n1": 1}
        assert cluster.trash_restore(filter="to~f0%").values == {"n0": 1, "n1": 1}
        assert cluster.trash_purge(filter="to~%@fan.example").values == {"n0": 1, "n1": 2}
        started = cluster.drain(filter="to~%@fan.example", action="bounce", per_minute=2)
        assert set(started.values) == {"n0", "n1"}
        rows, errors = cluster.jobs()
        assert not errors
        mine = {(label, job.id): job for label, job in rows
                if job.id == started.values[label]}
        assert {(label, job.remaining) for (label, _), job in mine.items()} == {("n0", 1), ("n1", 1)}
        cancelled = cluster.job_cancel({label: int(v) for label, v in started.values.items()})
        assert not cancelled.errors
    finally:
        cluster.close()
        for server in servers:
            _clear(server)
