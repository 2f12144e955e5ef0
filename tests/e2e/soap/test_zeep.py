"""zeep against the live SOAP server: every operation of the queue/node/user surface."""

from __future__ import annotations

import pytest
from zeep.exceptions import Fault

from appliance.access.audit import recent
from appliance.db.models import QueueEntry
from appliance.types import QueueState
from tests.e2e.soap.conftest import Api


def test_node_operations(api: Api) -> None:
    c = api.zeep()
    assert c.service.login() is True
    assert c.service.getSerial() == "SERIAL-E2E"
    assert c.service.getVersion()
    assert 0 <= c.service.getUptime() < 60
    api.queue(state=QueueState.HOLD)
    status = c.service.systemStatus()
    assert status.serial == "SERIAL-E2E" and status.hostname == "node.test"
    assert {(i.state, i.count) for i in status.queue.item} == {("ACTIVE", 0), ("DEFER", 0), ("HOLD", 1)}


def test_mail_queue_items_carry_every_field(api: Api) -> None:
    [qid] = api.queue(subject="Grüße ✓", metadata={"tenant": "t1"})
    c = api.zeep()
    page = c.service.mailQueue(filter="", offset=0, limit=10, options={"totalhits": True})
    assert page.totalhits == 1
    [item] = page.result.item
    assert item.id == qid and item.msgsubject == "Grüße ✓".encode()
    assert item.msgfrom == "alice@sender.example" and item.msgto == "bob@outside.example"
    assert item.msgqueue == "HOLD" and item.msgerror == b"" or item.msgerror is None
    assert item.msgfromserver == "192.0.2.7" and item.msghelo == "client.example"
    assert item.serialno == "SERIAL-E2E" and item.msgpath.endswith(".eml")
    assert [(m.first, m.second) for m in item.msgmetadata.item] == [("tenant", "t1")]
    assert isinstance(item.msgts0, int) and item.msgsize > 0


def test_mail_queue_empty_one_and_paging(api: Api) -> None:
    c = api.zeep()
    empty = c.service.mailQueue(filter="", offset=0, limit=10, options={"totalhits": True})
    assert empty.result is None or empty.result.item == [] and empty.totalhits == 0
    ids = [api.queue(subject=f"m{i}", received=1000.0 + i)[0] for i in range(3)]
    one = c.service.mailQueue(filter="subject~m1", offset=0, limit=10)
    assert [i.id for i in one.result.item] == [ids[1]] and one.totalhits is None
    page = c.service.mailQueue(filter="", offset=1, limit=1)
    assert [i.id for i in page.result.item] == [ids[1]]  # newest first


def test_count_and_group_by(api: Api) -> None:
    api.queue(rcpts=("a@x.example", "b@x.example", "c@y.example"))
    c = api.zeep()
    assert c.service.mailQueueCount(filter="to~%@x.example") == 2
    rows = c.service.mailQueueGroupBy(filter="", field="to-domain")
    got = {r.key: (r.count, sum(r.buckets.item)) for r in rows}
    assert got == {"x.example": (2, 2), "y.example": (1, 1)}


def test_history_after_delete(api: Api) -> None:
    [qid] = api.queue(subject="gone")
    c = api.zeep()
    assert c.service.mailQueueDelete(id=qid) is None
    page = c.service.mailHistory(filter="action=DELETE", offset=0, limit=10,
                                 options={"totalhits": True})
    [row] = page.result.item
    assert row.msgqueueid == qid and row.msgaction == "DELETE" and row.msgsubject == b"gone"
    assert c.service.mailQueueCount(filter="") == 0


def test_single_id_actions(api: Api) -> None:
    a, b, d = (api.queue()[0] for _ in range(3))
    c = api.zeep()
    c.service.mailQueueRetry(id=a)
    assert _state(api, a) == "ACTIVE" and api.kicks
    c.service.mailQueueRetry(id=b, duplicate=True)
    assert c.service.mailQueueCount(filter="") == 4  # the copy joins, the original stays
    c.service.mailQueueHold(id=a)
    assert _state(api, a) == "HOLD"
    c.service.mailQueueMetaDataSet(id=a, key="case", value="1234")
    assert c.service.mailQueueCount(filter="metadata.case=1234") == 1
    c.service.mailQueueBounce(id=d)
    assert _state(api, d) is None
    # the DSN to the sender is queued, and the BOUNCE is in history
    assert c.service.mailQueueCount(filter="to=alice@sender.example") == 1
    assert c.service.mailHistory(filter="action=BOUNCE", offset=0, limit=5).result.item[0].msgqueueid == d


def test_bulk_actions(api: Api) -> None:
    for _ in range(3):
        api.queue(rcpts=("r@bulk.example",))
    api.queue(rcpts=("r@keep.example",))
    c = api.zeep()
    assert c.service.mailQueueRetryBulk(filter="to~%@bulk.example") == 3
    assert c.service.mailQueueHoldBulk(filter="to~%@bulk.example") == 3
    assert c.service.mailQueueRetryBulk(filter="to~%@bulk.example", duplicate=True) == 3
    assert c.service.mailQueueCount(filter="to~%@bulk.example") == 6
    assert c.service.mailQueueDeleteBulk(filter="to~%@bulk.example queue=HOLD") == 3
    assert c.service.mailQueueBounceBulk(filter="to~%@bulk.example") == 3
    assert c.service.mailQueueCount(filter="to~%@bulk.example") == 0
    assert c.service.mailQueueCount(filter="to~%@keep.example") == 1
    with api.store.transaction(read_only=True) as s:
        ops = [r.operation for r in recent(s)]
    assert ops[:5] == ["mailQueueBounceBulk", "mailQueueDeleteBulk", "mailQueueRetryBulk",
                       "mailQueueHoldBulk", "mailQueueRetryBulk"]


def test_file_read(api: Api) -> None:
    body = b"Subject: x\r\n\r\n" + bytes(range(256)) * 10
    [qid] = api.queue(body=body)
    c = api.zeep()
    path = c.service.mailQueue(filter="", offset=0, limit=1).result.item[0].msgpath
    first = c.service.fileRead(file=path, offset=0, size=1000)
    assert first.data == body[:1000] and first.size == 1000 and first.offset == 1000
    rest = c.service.fileRead(file=path, offset=1000, size=100000)
    assert first.data + rest.data == body and rest.offset == len(body)


def test_users(api: Api) -> None:
    c = api.zeep()
    names = [u.username for u in c.service.userList()]
    assert names == ["admin", "tenant", "viewer"]
    c.service.userAdd(username="ops", password="s3cret", role="custom",
                      operations={"item": ["mailQueue"]}, restriction="from~%@ops.example")
    ops = [u for u in c.service.userList() if u.username == "ops"][0]
    assert ops.role == "custom" and ops.operations.item == ["mailQueue"]
    assert api.zeep("ops", "s3cret").service.login() is True
    c.service.userPasswordSet(username="ops", password="n3w")
    with pytest.raises(Exception):
        api.zeep("ops", "s3cret").service.login()
    assert api.zeep("ops", "n3w").service.login() is True
    c.service.userDelete(username="ops")
    assert "ops" not in [u.username for u in c.service.userList()]
    with api.store.transaction(read_only=True) as s:
        records = recent(s)
    changes = [r.operation for r in records if r.operation != "login"]
    assert changes[:3] == ["userDelete", "userPasswordSet", "userAdd"]
    # The refused old password is audited as a failed login (and never its password).
    assert [(r.username, r.outcome) for r in records if r.operation == "login"] == [
        ("ops", "failed: bad credentials")]
    assert all("s3cret" not in r.arguments and "n3w" not in r.arguments for r in records)


@pytest.mark.parametrize("call, expected", [
    (lambda c: c.service.mailQueue(filter="frm=x", offset=0, limit=5),
     "invalid filter at 0: unknown field 'frm'"),
    (lambda c: c.service.mailQueueDelete(id=999999), "no queue entry 999999"),
    (lambda c: c.service.mailQueue(filter="", offset=-1, limit=5), "offset must be 0 or more"),
    (lambda c: c.service.mailQueueCount(filter='subject~"open'), "invalid filter at"),
    (lambda c: c.service.mailQueueGroupBy(filter="", field="colour"), "colour"),
    (lambda c: c.service.fileRead(file="../store.db", offset=0, size=10), "not a spool path"),
    (lambda c: c.service.userAdd(username="admin", password="x", role="admin"), "exists"),
    (lambda c: c.service.userAdd(username="bad", password="x", role="custom",
                                 restriction="frm=1"), "unknown field 'frm'"),
    (lambda c: c.service.userDelete(username="admin"), "cannot delete itself"),
])
def test_faults_say_what_was_wrong(api: Api, call, expected: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Fault) as caught:
        call(api.zeep())
    assert expected in caught.value.message


def _state(api: Api, entry_id: int) -> str | None:
    with api.store.transaction(read_only=True) as s:
        entry = s.get(QueueEntry, entry_id)
        return None if entry is None else entry.state
