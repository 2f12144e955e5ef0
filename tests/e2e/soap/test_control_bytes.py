"""Old rows with NUL and control bytes in MAIL, RCPT and EHLO: every page that holds one still
answers with well-formed XML, the bytes shown as Unicode Control Pictures (appliance.soap.protocol)."""

from __future__ import annotations

from pathlib import Path

import requests
import zeep
from lxml import etree

from tests.e2e.soap.conftest import Api
from tests.support.node import RunningNode

SENDER = "a\x00b\x01@bad\x1f.example"
RCPT = "r\x07@bad\x1b.example"
HELO = "helo\x00\x0b"
SHOWN_SENDER = "a\u2400b\u2401@bad\u241f.example"
SHOWN_RCPT = "r\u2407@bad\u241b.example"


def _insert(api: Api) -> list[int]:
    """Straight into the store, as rows written before the SMTP door refused such bytes."""
    ids = api.queue(sender=SENDER, rcpts=(RCPT, "good@fine.example"))
    from appliance.db.models import QueueEntry
    with api.store.transaction() as session:
        for entry in session.query(QueueEntry).filter(QueueEntry.id.in_(ids)):
            entry.helo = HELO
    return ids


def test_zeep_reads_queue_history_and_groups(api: Api) -> None:
    bad, good = _insert(api)
    api.queue(sender="plain@fine.example")
    c = api.zeep()
    page = c.service.mailQueue("", 0, 10, {"totalhits": True})
    assert page.totalhits == 3
    by_id = {item.id: item for item in page.result.item}
    assert by_id[bad].msgfrom == SHOWN_SENDER and by_id[bad].msgto == SHOWN_RCPT
    assert by_id[bad].msghelo == "helo\u2400\u240b"
    assert by_id[good].msgto == "good@fine.example"
    groups = c.service.mailQueueGroupBy("", "to-domain")
    assert {g.key: g.count for g in groups} == {"bad\u241b.example": 1, "fine.example": 1,
                                                   "outside.example": 1}
    senders = c.service.mailQueueGroupBy("", "from-domain")
    assert {g.key for g in senders} == {"bad\u241f.example", "fine.example"}
    c.service.mailQueueDelete(id=bad)
    history = c.service.mailHistory("action=DELETE", 0, 10, {"totalhits": True})
    assert history.totalhits == 1
    assert history.result.item[0].msgfrom == SHOWN_SENDER


def test_suds_reads_the_same_pages(api: Api) -> None:
    bad, _ = _insert(api)
    c = api.suds()
    page = c.service.mailQueue("", 0, 10, {"totalhits": True})
    assert page.totalhits == 2
    assert {item.msgfrom for item in page.result.item} == {SHOWN_SENDER}
    rows = c.service.mailQueueGroupBy("", "to-domain")
    assert sorted(r.key for r in rows.item) == ["bad\u241b.example", "fine.example"]
    c.service.mailQueueDelete(bad)
    history = c.service.mailHistory("", 0, 10, {"totalhits": True})
    assert history.result.item[0].msgto == SHOWN_RCPT


def test_raw_response_is_well_formed_with_status_200(api: Api) -> None:
    _insert(api)
    body = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:h="urn:halon"><soapenv:Body><h:mailQueue><h:filter></h:filter>'
        '<h:offset>0</h:offset><h:limit>10</h:limit></h:mailQueue></soapenv:Body>'
        '</soapenv:Envelope>')
    resp = requests.post(api.url, data=body.encode(), auth=("admin", "admin-pw"),
                         headers={"Content-Type": "text/xml; charset=utf-8",
                                  "SOAPAction": '"mailQueue"'}, timeout=30)
    assert resp.status_code == 200
    doc = etree.fromstring(resp.content)
    assert SHOWN_SENDER in [e.text for e in doc.iter("{urn:halon}msgfrom")]


def test_php_soapclient_reads_the_pages(api: Api) -> None:
    _insert(api)
    queue, groups = api.php([("mailQueue", {"filter": "", "offset": 0, "limit": 10}),
                             ("mailQueueGroupBy", {"filter": "", "field": "from-domain"})])
    assert {i["msgfrom"] for i in queue["ok"]["result"]["item"]} == {SHOWN_SENDER}
    assert [g["key"] for g in groups["ok"]["result"]["item"]] == ["bad\u241f.example"]


def test_a_live_node_answers_pages_holding_old_rows(tmp_path: Path) -> None:
    from appliance.db.engine import Store
    from appliance.queue.spool import Spool
    from tests.e2e.soap.conftest import Api as StoreApi

    with RunningNode(tmp_path) as node:
        store = Store(f"sqlite:///{node.data_dir / 'appliance.db'}")
        try:
            _insert(StoreApi(server=None, store=store, spool=Spool(node.data_dir / "spool"),  # type: ignore[arg-type]
                             kicks=[]))
        finally:
            store.dispose()
        session = requests.Session()
        session.auth = ("admin", node.admin_password)
        client = zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=session))
        page = client.service.mailQueue("", 0, 10, {"totalhits": True})
        assert page.totalhits == 2 and {i.msgfrom for i in page.result.item} == {SHOWN_SENDER}
        groups = client.service.mailQueueGroupBy("", "to-domain")
        assert {g.key for g in groups} == {"bad\u241b.example", "fine.example"}
