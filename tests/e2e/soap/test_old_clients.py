"""The requests the old API's clients (halonctl, halonadm) send, replayed with suds and PHP's
SoapClient against a live server: anonymous ?wsdl, id=/retry=, action=DELIVER, fileRead with a
huge size, msgscore pairs, the software update operations."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from suds.cache import NoCache
from suds.client import Client as SudsClient
from sqlalchemy import update

from appliance.access.audit import recent
from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.queue import store as queue_store
from appliance.queue.spool import Spool
from appliance.soap.calls import NodeContext
from appliance.soap.server import Listen, SoapServer
from appliance.types import Envelope, NewMessage, QueueState
from tests.e2e.soap.conftest import PASSWORDS, PHP_CLIENT, Api

needs_php = pytest.mark.skipif(shutil.which("php") is None, reason="php-cli is not installed")


def php(url: str, calls: list[tuple[str, dict[str, Any]]], *, user: str = "admin",
        password: str | None = None, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """PHP's SoapClient as the old clients create it; user '' sends no credentials at all."""
    done = subprocess.run(
        ["php", str(PHP_CLIENT), url + "?wsdl", user,
         PASSWORDS.get(user, "") if password is None else password, "0"],
        input=json.dumps(calls), capture_output=True, text=True, timeout=120, check=False,
        env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def quarantined(api: Api, rcpt: str) -> int:
    """A message a policy quarantined (HOLD, action QUARANTINE): what the SMTP side queues."""
    msgid = str(uuid.uuid4())
    data = f"Subject: q\r\n\r\nquarantined {msgid}\r\n".encode()
    path = api.spool.write(msgid, data)
    msg = NewMessage(msgid=msgid, envelope=Envelope(sender="spam@sender.example", recipients=(rcpt,),
                     listener="inbound"), path=path, size=len(data), subject="q",
                     received=time.time(), transport="default", state=QueueState.HOLD,
                     quarantine="spam")
    with api.store.transaction() as session:
        return queue_store.enqueue(session, msg, now=time.time())[0]


def test_the_wsdl_is_public_and_every_operation_still_needs_credentials(api: Api) -> None:
    anonymous = requests.get(api.url + "?wsdl", timeout=10)
    assert anonymous.status_code == 200 and b"wsdl:definitions" in anonymous.content
    assert anonymous.content == requests.get(api.url + "?wsdl", auth=("admin", "admin-pw"),
                                             timeout=10).content
    assert requests.get(api.url, timeout=10).status_code == 401  # the HTML page is not public
    # suds loads the WSDL without credentials (as halonctl does on start); a call still needs them.
    client = SudsClient(api.url + "?wsdl", cache=NoCache(), timeout=30)
    with pytest.raises(Exception, match="401"):
        client.service.login()
    assert api.suds().service.login() is True


@needs_php
def test_php_loads_the_wsdl_anonymously_and_calls_fault(api: Api) -> None:
    [anonymous] = php(api.url, [("getSerial", {})], user="", password="")
    assert "fault" in anonymous and "Unauthorized" in anonymous["fault"][1]
    [serial] = php(api.url, [("getSerial", {})])
    assert serial["ok"] == {"result": "SERIAL-E2E"}


def test_a_config_switch_requires_credentials_for_the_wsdl(tmp_path: Path, template_db: Path) -> None:
    db = tmp_path / "store.db"
    shutil.copy(template_db, db)
    store = Store(f"sqlite:///{db}")
    required = [True]
    server = SoapServer(NodeContext(store=store, spool=Spool(tmp_path / "spool"), serial="S"),
                        Listen.parse("http://127.0.0.1:0"), wsdl_requires_auth=lambda: required[0])
    server.start()
    try:
        refused = requests.get(server.url + "?wsdl", timeout=10)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
        assert requests.get(server.url + "?wsdl", auth=("admin", "admin-pw"), timeout=10).ok
        required[0] = False  # what a new config revision does: read per request
        assert requests.get(server.url + "?wsdl", timeout=10).ok
    finally:
        server.stop()
        store.dispose()


def test_old_hql_names_id_and_retry(api: Api) -> None:
    first, second = api.queue(rcpts=("a@one.example", "b@one.example"))
    with api.store.transaction() as session:
        session.execute(update(QueueEntry).where(QueueEntry.id == second).values(retries=2))
    c = api.suds()
    [item] = c.service.mailQueue(f"id={first}", 0, 10, None).result.item
    assert item.id == first and item.msgretries == 0
    [item] = c.service.mailQueue("retry=2", 0, 10, None).result.item
    assert item.id == second
    assert c.service.mailQueueCount(f"id>={first} and retry<2") == 1
    assert c.service.mailQueueCount("retries=2") == 1 and c.service.mailQueueCount(f"queueid={first}") == 1
    c.service.mailQueueDelete(first)
    [row] = c.service.mailHistory(f"id={first}", 0, 10, None).result.item  # id: the queue id
    assert row.msgqueueid == first and row.msgaction == "DELETE"
    if shutil.which("php"):
        by_id, by_retry = php(api.url, [("mailQueue", {"filter": f"id={second}", "limit": 10}),
                                        ("mailQueueCount", {"filter": "retry>1"})])
        assert [i["id"] for i in by_id["ok"]["result"]["item"]] == [second]
        assert by_retry["ok"] == {"result": 1}


def test_msgaction_deliver_and_quarantine(api: Api) -> None:
    waiting = api.queue(rcpts=("w@one.example",), state=QueueState.DEFER)[0]
    held = api.queue(rcpts=("h@one.example",), state=QueueState.HOLD)[0]
    spam = quarantined(api, "q@one.example")
    c = api.suds()
    items = {i.id: i for i in c.service.mailQueue("", 0, 10, None).result.item}
    assert {i: items[i].msgaction for i in items} == {
        waiting: "DELIVER", held: "DELIVER", spam: "QUARANTINE"}
    # halonctl's `postfix qshape`: mailQueue(filter="action=DELIVER")
    assert sorted(i.id for i in c.service.mailQueue("action=DELIVER", 0, 10, None).result.item) == [
        waiting, held]
    assert c.service.mailQueueCount("action=QUARANTINE") == 1
    assert c.service.mailQueueCount("action=DELIVER and queue=DEFER") == 1
    c.service.mailQueueRetry(spam, False)  # released: still the policy's decision on the entry
    assert c.service.mailQueueCount("action=QUARANTINE and queue=ACTIVE") == 1
    if shutil.which("php"):
        [page] = php(api.url, [("mailQueue", {"filter": "action=DELIVER", "limit": 10})])
        assert sorted((i["id"], i["msgaction"]) for i in page["ok"]["result"]["item"]) == [
            (waiting, "DELIVER"), (held, "DELIVER")]


def test_file_read_clamps_a_huge_size_and_says_where_to_continue(api: Api) -> None:
    body = b"Subject: big\r\n\r\n" + bytes(range(256)) * (4608 * 4)  # 4.5 MiB + header
    api.queue(body=body)
    c = api.suds()
    path = c.service.mailQueue("", 0, 1, None).result.item[0].msgpath
    first = c.service.fileRead(path, 0, 999999999)  # halonadm's `view`
    assert first.size == 4 * 1024 * 1024 and first.offset == first.size
    rest = c.service.fileRead(path, first.offset, 999999999)
    assert rest.size == len(body) - first.size and rest.offset == len(body)
    assert base64.b64decode(first.data) + base64.b64decode(rest.data) == body
    end = c.service.fileRead(path, len(body), 999999999)
    assert end.size == 0 and end.offset == len(body)
    if shutil.which("php"):
        [read] = php(api.url, [("fileRead", {"file": path, "offset": 10, "size": 999999999})])
        data = read["ok"]["data"]
        got = base64.b64decode(data["b64"]) if isinstance(data, dict) else data.encode()
        assert got == body[10:10 + 4 * 1024 * 1024]
        assert read["ok"]["size"] == 4 * 1024 * 1024 and read["ok"]["offset"] == 10 + 4 * 1024 * 1024


def test_msgscore_is_a_pair_array(api: Api) -> None:
    scored, unscored = api.queue(rcpts=("s@one.example", "u@one.example"))
    with api.store.transaction() as session:
        session.execute(update(QueueEntry).where(QueueEntry.id == scored).values(score=4.5))
    c = api.suds()
    items = {i.id: i for i in c.service.mailQueue("", 0, 10, None).result.item}
    # halonadm's `mailq -v` reads msgscore.item[0].second
    assert items[scored].msgscore.item[0].first == "policy"
    assert items[scored].msgscore.item[0].second.split("|")[0] == "4.5"
    assert not getattr(items[unscored].msgscore, "item", [])
    if shutil.which("php"):
        [page] = php(api.url, [("mailQueue", {"filter": f"id={scored}", "limit": 1})])
        assert page["ok"]["result"]["item"][0]["msgscore"] == {
            "item": [{"first": "policy", "second": "4.5"}]}


def test_update_operations_explain_the_package_manager(api: Api) -> None:
    import appliance

    c = api.suds()
    status = c.service.updateDownloadStatus()
    assert appliance.__version__ in status and "package manager" in status
    for operation in ("updateDownloadStart", "updateDownloadCancel", "updateInstall"):
        with pytest.raises(Exception, match="package manager") as fault:
            getattr(c.service, operation)()
        assert "Client.Unsupported" in str(fault.value.fault.faultcode)  # type: ignore[attr-defined]
    with api.store.transaction(read_only=True) as session:
        audited = {r.operation: r.outcome for r in recent(session, limit=10)}
    assert all(audited[o].startswith("fault: ") for o in
               ("updateDownloadStart", "updateDownloadCancel", "updateInstall"))
    # A read-only user is refused the mutating ones before anything else (and audited).
    viewer = api.suds("viewer")
    with pytest.raises(Exception, match="Forbidden|not allowed|may not"):
        viewer.service.updateInstall()
    assert "package manager" in viewer.service.updateDownloadStatus()
    if shutil.which("php"):
        got, refused = php(api.url, [("updateDownloadStatus", {}), ("updateInstall", {})])
        assert "package manager" in got["ok"]["result"]
        assert refused["fault"][0].endswith("Client.Unsupported") and "package manager" in refused["fault"][1]

