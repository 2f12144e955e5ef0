"""PHP's SoapClient (login/password, uri urn:halon, SOAP_SINGLE_ELEMENT_ARRAYS, gzip) against the
live SOAP server, covering every operation of this surface."""

from __future__ import annotations

import logging
import shutil

import pytest

from tests.e2e.soap.conftest import Api

pytestmark = pytest.mark.skipif(shutil.which("php") is None, reason="php-cli is not installed")


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip-request"])
def test_reads_single_element_arrays_and_base64(api: Api, gzip: bool,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="appliance.soap.gateway")
    [qid] = api.queue(subject="Grüße ✓", metadata={"k": "v"})
    out = api.php([
        ("login", {}),
        ("getSerial", {}),
        ("getVersion", {}),
        ("getUptime", {}),
        ("systemStatus", {}),
        ("mailQueue", {"filter": "", "offset": 0, "limit": 10, "options": {"totalhits": True}}),
        ("mailQueue", {"filter": "to~nobody", "offset": 0, "limit": 10}),
        ("mailHistory", {"filter": "", "offset": 0, "limit": 10, "options": {"totalhits": True}}),
        ("mailQueueCount", {"filter": ""}),
        ("mailQueueGroupBy", {"filter": "", "field": "to-domain"}),
        ("userList", {}),
    ], gzip=gzip)
    ok = [r.get("ok") for r in out]
    assert all("ok" in r for r in out), out
    assert ok[0]["result"] is True and ok[1]["result"] == "SERIAL-E2E"
    assert ok[4]["result"]["serial"] == "SERIAL-E2E"
    page = ok[5]
    assert page["totalhits"] == 1
    # SOAP_SINGLE_ELEMENT_ARRAYS: one item is still a list
    assert isinstance(page["result"]["item"], list) and len(page["result"]["item"]) == 1
    item = page["result"]["item"][0]
    assert item["id"] == qid and item["msgsubject"] == "Grüße ✓"  # base64 decoded by PHP
    assert item["msgmetadata"]["item"] == [{"first": "k", "second": "v"}]
    assert ok[6]["result"] == {} or ok[6]["result"].get("item", []) == []
    assert ok[7]["totalhits"] == 0
    assert ok[8]["result"] == 1
    [group] = ok[9]["result"]["item"]
    assert group["key"] == "outside.example" and group["count"] == 1
    assert len(group["buckets"]["item"]) == 10
    assert [u["username"] for u in ok[10]["result"]["item"]] == ["admin", "tenant", "viewer"]
    assert out[10]["response_gzip"] is True  # ACCEPT: the server compressed the response
    decoded = [r for r in caplog.records if "gzip request body" in r.getMessage()]
    assert bool(decoded) is gzip  # with a level OR'ed in, PHP compressed its requests


def test_mutations(api: Api) -> None:
    a, b, c, d = api.queue(rcpts=("1@p.example", "2@p.example", "3@p.example", "4@q.example"))
    out = api.php([
        ("mailQueueRetry", {"id": a, "duplicate": True}),
        ("mailQueueRetry", {"id": a}),
        ("mailQueueHold", {"id": a}),
        ("mailQueueMetaDataSet", {"id": a, "key": "ticket", "value": "42"}),
        ("mailQueueCount", {"filter": "metadata.ticket=42"}),
        ("mailQueueBounce", {"id": b}),
        ("mailQueueDelete", {"id": c}),
        ("mailQueueHoldBulk", {"filter": "to~%@p.example"}),
        ("mailQueueRetryBulk", {"filter": "to~%@p.example", "duplicate": False}),
        ("mailQueueBounceBulk", {"filter": "to~%@q.example"}),
        ("mailQueueDeleteBulk", {"filter": "to~%@p.example"}),
        ("userAdd", {"username": "phpuser", "password": "pw", "role": "custom",
                     "operations": {"item": ["mailQueue"]}, "restriction": "to~%@p.example"}),
        ("userPasswordSet", {"username": "phpuser", "password": "pw2"}),
        ("userDelete", {"username": "phpuser"}),
        ("mailQueueDelete", {"id": 424242}),
    ], gzip=True)
    assert all("ok" in r for r in out[:-1]), out
    assert out[4]["ok"]["result"] == 1
    assert [out[i]["ok"]["result"] for i in (7, 8, 9, 10)] == [2, 2, 1, 2]
    code, text = out[-1]["fault"]
    assert "NotFound" in code and text == "no queue entry 424242"


def test_file_read(api: Api) -> None:
    body = b"Subject: b\r\n\r\n" + bytes(range(256))
    api.queue(body=body)
    [page] = api.php([("mailQueue", {"filter": "", "offset": 0, "limit": 1})])
    path = page["ok"]["result"]["item"][0]["msgpath"]
    [read, bad] = api.php([("fileRead", {"file": path, "offset": 0, "size": 4096}),
                           ("fileRead", {"file": "/etc/passwd", "offset": 0, "size": 10})])
    import base64
    assert base64.b64decode(read["ok"]["data"]["b64"]) == body
    assert read["ok"]["size"] == len(body) and read["ok"]["offset"] == len(body)
    assert "not a spool path" in bad["fault"][1]
