"""suds (suds-community) against the live SOAP server: wrappers, arrays, base64, faults."""

from __future__ import annotations

import base64
import time

import pytest
from suds import WebFault

from appliance.bounce.notices import write_dsns
from tests.e2e.soap.conftest import Api


def test_node_and_one_child_wrappers(api: Api) -> None:
    c = api.suds()
    assert c.service.login() is True
    assert c.service.getSerial() == "SERIAL-E2E"
    assert c.service.getUptime() >= 0
    assert c.service.systemStatus().serial == "SERIAL-E2E"
    assert c.service.mailQueueCount("") == 0


def test_mail_queue_two_children_and_arrays(api: Api) -> None:
    api.queue(subject="Grüße ✓", metadata={"k": "v"})
    c = api.suds()
    page = c.service.mailQueue("", 0, 10, {"totalhits": True})
    # Two children: suds hands back the wrapper with `result` and `totalhits`.
    assert page.totalhits == 1
    [item] = page.result.item
    assert base64.b64decode(item.msgsubject).decode() == "Grüße ✓"
    assert item.msgmetadata.item[0].first == "k" and item.msgmetadata.item[0].second == "v"
    empty = c.service.mailQueue("to~nobody", 0, 10, {"totalhits": True})
    assert empty.totalhits == 0 and not getattr(empty.result, "item", [])


def test_mutations_and_bulk(api: Api) -> None:
    a, b = api.queue(rcpts=("x@one.example", "y@one.example"))
    c = api.suds()
    c.service.mailQueueRetry(a, True)
    c.service.mailQueueHold(a)
    c.service.mailQueueMetaDataSet(a, "note", "n1")
    assert c.service.mailQueueCount("metadata.note=n1") == 1
    c.service.mailQueueBounce(b)
    c.service.mailQueueDelete(a)
    assert c.service.mailQueueHoldBulk("to~%@one.example") == 1  # the duplicate
    assert c.service.mailQueueRetryBulk("to~%@one.example", False) == 1
    assert c.service.mailQueueBounceBulk("to~%@one.example") == 1
    # The bulk bounce's DSN is owed until the node's bounce notifier writes it (here by hand).
    assert write_dsns(api.store, api.spool, now=time.time(), hostname="node.test")[0] == 1
    assert c.service.mailQueueDeleteBulk("") == 2  # the two DSNs to alice
    history = c.service.mailHistory("action=BOUNCE or action=DELETE", 0, 10, {"totalhits": True})
    assert history.totalhits == 5
    rows = c.service.mailQueueGroupBy("", "to-domain")
    assert not getattr(rows, "item", [])


def test_file_read_and_users(api: Api) -> None:
    api.queue(body=b"Subject: s\r\n\r\n\x00\xff binary")
    c = api.suds()
    path = c.service.mailQueue("", 0, 1, None).result.item[0].msgpath
    got = c.service.fileRead(path, 0, 100)
    assert base64.b64decode(got.data) == b"Subject: s\r\n\r\n\x00\xff binary" and got.size == 23
    c.service.userAdd("sudsuser", "pw1", "readonly", None, None, None)
    assert "sudsuser" in [u.username for u in c.service.userList().item]
    c.service.userPasswordSet("sudsuser", "pw2")
    c.service.userDelete("sudsuser")


def test_fault(api: Api) -> None:
    with pytest.raises(WebFault) as caught:
        api.suds().service.mailQueueCount("to~x or")
    assert "invalid filter at" in caught.value.fault.faultstring
