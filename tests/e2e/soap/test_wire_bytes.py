"""The live server's responses are byte for byte what stock Spyne (Soap11) makes of the same call.

The server writes responses with ApplianceSoap11 (appliance.soap.protocol); here the same
requests, over the same store and caller, are also answered in-process by the application built
with Spyne's own Soap11 behind the same gateway, and the bodies compared (gzip'd or not).
"""

from __future__ import annotations

import base64
import gzip
import http.client
import io
from wsgiref.util import setup_testing_defaults

import pytest
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

from appliance.soap.app import build_application
from appliance.soap.gateway import Gateway
from tests.e2e.soap.conftest import PASSWORDS, Api

ENVELOPE = ('<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:t="urn:halon"><e:Body>{}</e:Body></e:Envelope>')
CALLS = {
    "queue page": "<t:mailQueue><t:filter></t:filter><t:limit>50</t:limit>"
                  "<t:options><t:totalhits>true</t:totalhits></t:options></t:mailQueue>",
    "queue one": "<t:mailQueue><t:filter>subject~Grüße</t:filter></t:mailQueue>",
    "queue none": "<t:mailQueue><t:filter>from=nobody@nowhere.example</t:filter></t:mailQueue>",
    "history": "<t:mailHistory><t:filter></t:filter><t:limit>50</t:limit></t:mailHistory>",
    "group by": "<t:mailQueueGroupBy><t:filter></t:filter><t:field>to-domain</t:field>"
                "</t:mailQueueGroupBy>",
    "users": "<t:userList/>",
    "serial": "<t:getSerial/>",
    "bad filter": "<t:mailQueue><t:filter>frm=x</t:filter></t:mailQueue>",
}


def fill(api: Api) -> None:
    api.queue(subject="Grüße – 日本語 <b> & \"q\"", metadata={"tenant": "t1", "ünï": "a<&>b"})
    api.queue(rcpts=("a@x.example", "b@x.example", "c@y.example"), subject="three")
    for i in range(30):
        api.queue(sender=f"s{i}@bench.example", subject=f"bulk {i}\r\nfolded",
                  metadata={"n": str(i)} if i % 2 else {})
    [gone] = api.queue(subject="to be deleted")
    status, _, _ = post(api, f"<t:mailQueueDelete><t:id>{gone}</t:id></t:mailQueueDelete>")
    assert status == 200


def post(api: Api, call: str, *, accept_gzip: bool = False) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", api.server.port, timeout=30)
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""',
               "Authorization": basic()}
    if accept_gzip:
        headers["Accept-Encoding"] = "gzip"
    conn.request("POST", "/remote/", ENVELOPE.format(call).encode(), headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def basic() -> str:
    return "Basic " + base64.b64encode(f"admin:{PASSWORDS['admin']}".encode()).decode()


def stock_answer(api: Api, gateway: Gateway, call: str) -> tuple[int, bytes]:
    body = ENVELOPE.format(call).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/remote/", "REMOTE_ADDR": "127.0.0.1",
               "CONTENT_TYPE": "text/xml; charset=utf-8", "CONTENT_LENGTH": str(len(body)),
               "HTTP_SOAPACTION": '""',
               "HTTP_AUTHORIZATION": basic(), "wsgi.input": io.BytesIO(body)}
    setup_testing_defaults(environ)
    status: list[str] = []
    out = b"".join(gateway(environ, lambda s, h, e=None: status.append(s)))
    return int(status[0].split()[0]), out


@pytest.fixture
def stock_gateway(api: Api) -> Gateway:
    app = build_application(node=api.server.context, out_protocol=Soap11())
    return Gateway(WsgiApplication(app), authenticator=api.server.authenticator, wsdl=b"",
                   page=b"", max_request_bytes=1 << 20)


def test_responses_equal_stock_spyne(api: Api, stock_gateway: Gateway) -> None:
    fill(api)
    for name, call in CALLS.items():
        expected_status, expected = stock_answer(api, stock_gateway, call)
        status, headers, body = post(api, call)
        assert (status, body) == (expected_status, expected), name
        status, headers, packed = post(api, call, accept_gzip=True)
        if len(expected) >= 512:
            assert headers.get("content-encoding") == "gzip", name
            packed = gzip.decompress(packed)
        assert (status, packed) == (expected_status, expected), name
    _, _, page = post(api, CALLS["queue page"])
    assert page.count(b"<tns:msgsubject>") == 34
    assert b"<tns:totalhits>34</tns:totalhits>" in page
    assert b"<tns:msgaction>DELETE</tns:msgaction>" in stock_answer(api, stock_gateway,
                                                                   CALLS["history"])[1]
