"""R5 and R6: credentials, throttling, access levels, restrictions, audit, fileRead confinement."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import requests
from zeep.exceptions import Fault

from appliance.access.audit import recent
from appliance.db.models import QueueEntry
from tests.e2e.soap.conftest import PASSWORDS, Api

LOGIN = ('<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="urn:halon">'
         '<e:Body><t:login/></e:Body></e:Envelope>')


SOAP = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"login"'}


def test_no_credentials_is_401_with_basic_challenge(api: Api) -> None:
    # The WSDL itself is public by default (tests/e2e/soap/test_old_clients.py); nothing else is.
    for response in (requests.get(api.url, timeout=5),
                     requests.post(api.url, data=LOGIN, headers=SOAP, timeout=5)):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_wrong_password_is_401_then_throttled(api: Api) -> None:
    for _ in range(5):
        response = requests.post(api.url, data=LOGIN, headers=SOAP, auth=("admin", "wrong"), timeout=5)
        assert response.status_code == 401 and "WWW-Authenticate" in response.headers
    # Five failures from this address: even good credentials wait now, unchecked.
    throttled = requests.post(api.url, data=LOGIN, headers=SOAP, auth=("admin", PASSWORDS["admin"]), timeout=5)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0


def test_throttle_is_per_user_and_not_reset_by_another_accounts_login(api: Api) -> None:
    def post(user: str, password: str) -> int:
        return requests.post(api.url, data=LOGIN, headers=SOAP, auth=(user, password),
                             timeout=5).status_code

    assert [post("admin", "wrong") for _ in range(4)] == [401] * 4
    assert post("viewer", PASSWORDS["viewer"]) == 200  # must not wipe admin's count
    assert post("admin", "wrong") == 401  # the fifth: admin is blocked from this address now
    assert post("admin", PASSWORDS["admin"]) == 429
    assert post("viewer", PASSWORDS["viewer"]) == 200  # another user from the same address
    assert post("tenant", PASSWORDS["tenant"]) == 200
    with api.store.transaction(read_only=True) as session:
        failed = [r for r in recent(session) if r.operation == "login"]
    assert len(failed) == 5 and {r.username for r in failed} == {"admin"}
    assert all('"soap"' in r.arguments and "wrong" not in r.arguments for r in failed)


def test_unknown_user_is_401(api: Api) -> None:
    assert requests.post(api.url, data=LOGIN, headers=SOAP, auth=("nobody", "x"), timeout=5).status_code == 401


def test_query_credentials_work_and_are_never_logged(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = PASSWORDS["viewer"]
    response = requests.post(f"{api.url}?username=viewer&password={secret}", data=LOGIN, headers=SOAP, timeout=5)
    assert response.status_code == 200 and b"true" in response.content
    wsdl = requests.get(f"{api.url}?wsdl&username=viewer&password={secret}", timeout=5)
    assert wsdl.status_code == 200 and b"wsdl:definitions" in wsdl.content
    bad = requests.post(f"{api.url}?username=viewer&password=nope-{secret}", data=LOGIN, headers=SOAP, timeout=5)
    assert bad.status_code == 401
    # (the client's own urllib3 logs its URL; the node's loggers must not)
    assert not [r for r in caplog.records
                if secret in r.getMessage() and not r.name.startswith("urllib3")]


def test_html_page_on_plain_get(api: Api) -> None:
    page = requests.get(api.url, auth=("admin", PASSWORDS["admin"]), timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert b"mailQueueBounceBulk" in page.content and b"?wsdl" in page.content


def test_readonly_reads_but_cannot_mutate(api: Api) -> None:
    [qid] = api.queue()
    c = api.zeep("viewer")
    assert c.service.mailQueueCount(filter="") == 1
    assert c.service.systemStatus().serial == "SERIAL-E2E"
    refused = [
        lambda: c.service.mailQueueDelete(id=qid),
        lambda: c.service.mailQueueRetry(id=qid),
        lambda: c.service.mailQueueBounce(id=qid),
        lambda: c.service.mailQueueHold(id=qid),
        lambda: c.service.mailQueueMetaDataSet(id=qid, key="k", value="v"),
        lambda: c.service.mailQueueDeleteBulk(filter=""),
        lambda: c.service.mailQueueRetryBulk(filter=""),
        lambda: c.service.mailQueueBounceBulk(filter=""),
        lambda: c.service.mailQueueHoldBulk(filter=""),
        lambda: c.service.userAdd(username="x", password="y", role="admin"),
        lambda: c.service.userList(),
    ]
    for call in refused:
        with pytest.raises(Fault, match="access denied"):
            call()
    assert c.service.mailQueueCount(filter="") == 1
    with api.store.transaction(read_only=True) as s:
        records = recent(s)
    # refused mutations are audited too
    assert sum(r.username == "viewer" and r.outcome.startswith("fault: access denied")
               for r in records) == 10


def test_restricted_user_sees_and_acts_on_nothing_outside(api: Api) -> None:
    [mine] = api.queue(rcpts=("me@tenant.example",), subject="mine")
    [other] = api.queue(rcpts=("you@other.example",), subject="other")
    other_path = _path(api, other)
    admin, tenant = api.zeep(), api.zeep("tenant")
    assert [i.id for i in tenant.service.mailQueue(filter="", offset=0, limit=10).result.item] == [mine]
    assert tenant.service.mailQueue(filter=f"queueid={other}", offset=0, limit=10).result is None
    assert tenant.service.mailQueueCount(filter="") == 1
    # `or` in the user's filter cannot escape the restriction (joined with &&)
    assert tenant.service.mailQueueCount(filter="to~other.example or to~tenant.example") == 1
    assert [g.key for g in tenant.service.mailQueueGroupBy(filter="", field="to-domain")] == ["tenant.example"]
    for call in (
        lambda: tenant.service.mailQueueDelete(id=other),
        lambda: tenant.service.mailQueueRetry(id=other, duplicate=True),
        lambda: tenant.service.mailQueueBounce(id=other),
        lambda: tenant.service.mailQueueHold(id=other),
        lambda: tenant.service.mailQueueMetaDataSet(id=other, key="k", value="v"),
        lambda: tenant.service.fileRead(file=other_path, offset=0, size=100),
    ):
        with pytest.raises(Fault, match="no (queue entry|such spool file)"):
            call()
    assert tenant.service.mailQueueHoldBulk(filter="") == 1
    assert tenant.service.mailQueueRetryBulk(filter=f"queueid={other} or queueid={mine}") == 1
    assert tenant.service.mailQueueDeleteBulk(filter="") == 1
    assert tenant.service.mailQueueBounceBulk(filter="") == 0
    [left] = admin.service.mailQueue(filter="", offset=0, limit=10).result.item
    assert left.id == other and left.msgqueue == "HOLD" and not left.msgmetadata  # untouched
    assert admin.service.mailHistory(filter="", offset=0, limit=10).result.item[0].msgqueueid == mine
    # history of the other recipient stays hidden too
    admin.service.mailQueueDelete(id=other)
    assert admin.service.mailHistory(filter="", offset=0, limit=10, options={"totalhits": True}).totalhits == 2
    [seen] = tenant.service.mailHistory(filter="", offset=0, limit=10).result.item
    assert seen.msgto == "me@tenant.example"
    # operations outside the level's list are refused
    with pytest.raises(Fault, match="access denied"):
        tenant.service.systemStatus()


def test_restricted_file_read_of_own_message(api: Api) -> None:
    [mine] = api.queue(rcpts=("me@tenant.example",), body=b"Subject: mine\r\n\r\nhello")
    got = api.zeep("tenant").service.fileRead(file=_path(api, mine), offset=0, size=100)
    assert got.data == b"Subject: mine\r\n\r\nhello"


def test_every_mutating_call_is_audited_with_who_where_what(api: Api) -> None:
    a, b = api.queue(rcpts=("x@a.example", "y@a.example"))
    c = api.zeep()
    c.service.mailQueueHold(id=a)
    c.service.mailQueueMetaDataSet(id=a, key="k", value="v")
    assert c.service.mailQueueRetryBulk(filter="to~%@a.example") == 2
    with pytest.raises(Fault):
        c.service.mailQueueDelete(id=987654)
    with api.store.transaction(read_only=True) as s:
        records = recent(s)[:4]
    assert [(r.operation, r.affected, r.outcome[:5]) for r in records] == [
        ("mailQueueDelete", 0, "fault"), ("mailQueueRetryBulk", 2, "ok"),
        ("mailQueueMetaDataSet", 1, "ok"), ("mailQueueHold", 1, "ok")]
    assert all(r.username == "admin" and r.remote == "127.0.0.1" for r in records)
    assert '"filter": "to~%@a.example"' in records[1].arguments


def test_file_read_cannot_leave_the_spool(api: Api, tmp_path: Path) -> None:
    [qid] = api.queue()
    secret = tmp_path / "outside.txt"
    secret.write_text("secret")
    spool_root = api.spool.root
    (spool_root / "ab").mkdir(exist_ok=True)
    os.symlink(secret, spool_root / "ab" / "link.eml")
    os.symlink("/etc", spool_root / "etc")
    c = api.zeep()
    for name in ("../store.db", "/etc/passwd", str(secret), "ab/../../store.db", "ab/link.eml",
                 "etc/passwd", "", "ab/nothing.eml", "tmp/../../store.db"):
        with pytest.raises(Fault) as caught:
            c.service.fileRead(file=name, offset=0, size=100)
        assert "spool" in caught.value.message or "file" in caught.value.message
    assert c.service.fileRead(file=_path(api, qid), offset=0, size=5).data == b"Subje"


def _path(api: Api, entry_id: int) -> str:
    with api.store.transaction(read_only=True) as s:
        entry = s.get(QueueEntry, entry_id)
        assert entry is not None
        return entry.path
