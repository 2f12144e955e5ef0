"""What reaches the API before Spyne: CSRF checks, encodings that hide a DOCTYPE, the page's
headers, access checked before the body is inflated, and per-array item caps."""

from __future__ import annotations

import gzip

import pytest
import requests

from appliance.access.audit import recent
from appliance.access.users import list_users
from tests.e2e.soap.conftest import PASSWORDS, Api

AUTH = ("admin", PASSWORDS["admin"])
ENV = ('<soap11env:Envelope xmlns:soap11env="http://schemas.xmlsoap.org/soap/envelope/" '
       'xmlns:tns="urn:halon"><soap11env:Body>{}</soap11env:Body></soap11env:Envelope>')
USER_ADD = ENV.format("<tns:userAdd><tns:username>evil</tns:username><tns:password>pw</tns:password>"
                      "<tns:role>admin</tns:role></tns:userAdd>")
XXE = ('<?xml version="1.0" encoding="{enc}"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
       + ENV.format("<tns:mailQueueCount><tns:filter>&e;</tns:filter></tns:mailQueueCount>"))


def users(api: Api) -> list[str]:
    with api.store.transaction(read_only=True) as session:
        return [u.name for u in list_users(session)]


def test_cross_site_form_post_is_refused_and_creates_nothing(api: Api) -> None:
    # What a browser sends for <form enctype="text/plain" method="post"> with cached Basic
    # credentials: no SOAPAction, a form content type, the attacker's Origin.
    form = requests.post(api.url, data=USER_ADD, auth=AUTH, timeout=10, headers={
        "Content-Type": "text/plain", "Origin": "https://attacker.example"})
    assert form.status_code == 415
    no_action = requests.post(api.url, data=USER_ADD, auth=AUTH, timeout=10,
                              headers={"Content-Type": "text/xml; charset=utf-8"})
    assert no_action.status_code == 400 and b"SOAPAction" in no_action.content
    foreign = requests.post(api.url, data=USER_ADD, auth=AUTH, timeout=10, headers={
        "Content-Type": "text/xml", "SOAPAction": '"userAdd"', "Origin": "https://attacker.example"})
    assert foreign.status_code == 403
    null_origin = requests.post(api.url, data=USER_ADD, auth=AUTH, timeout=10, headers={
        "Content-Type": "text/xml", "SOAPAction": '"userAdd"', "Origin": "null"})
    assert null_origin.status_code == 403
    assert "evil" not in users(api)
    # The same request as a SOAP client sends it (same-origin Origin allowed) works.
    own = api.url.rsplit("/remote/", 1)[0]
    ok = requests.post(api.url, data=USER_ADD, auth=AUTH, timeout=10, headers={
        "Content-Type": "text/xml", "SOAPAction": '"userAdd"', "Origin": own})
    assert ok.status_code == 200, ok.content
    assert "evil" in users(api)


@pytest.mark.parametrize("charset", ["utf-16", "utf-16-le", "utf-32", "cp500"])
def test_doctype_hidden_by_another_encoding_is_refused(api: Api, charset: str) -> None:
    bom = "\ufeff" if charset.startswith("utf-16") and charset != "utf-16-le" else ""
    body = (bom + XXE.format(enc=charset)).encode(charset.replace("-le", "-le"))
    for ctype in (f"text/xml; charset={charset}", "text/xml"):
        response = requests.post(api.url, data=body, auth=AUTH, timeout=10, headers={
            "Content-Type": ctype, "SOAPAction": '""'})
        assert response.status_code == 500 and b"soap11env:Client" in response.content
        assert b"root:" not in response.content
    # Declared in ASCII, switched to EBCDIC after the declaration.
    tail = XXE.format(enc="cp500").split("?>", 1)[1].encode("cp500")
    mixed = b'<?xml version="1.0" encoding="cp500"?>' + tail
    response = requests.post(api.url, data=mixed, auth=AUTH, timeout=10, headers={
        "Content-Type": "text/xml", "SOAPAction": '"mailQueueCount"'})
    assert b"cp500" in response.content and b"root:" not in response.content
    assert api.zeep().service.getSerial() == "SERIAL-E2E"


def test_operations_page_forbids_framing_and_scripts(api: Api) -> None:
    page = requests.get(api.url, auth=AUTH, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"


def test_access_is_checked_before_the_body_is_inflated(api: Api) -> None:
    # A readonly user may not call userAdd: refused (and audited) on the SOAPAction alone;
    # the bomb would inflate to 100 MiB, far past the cap, yet the answer is "access denied".
    bomb = gzip.compress(USER_ADD.encode()[:-40] + b" " * (100 << 20))
    response = requests.post(api.url, data=bomb, auth=("viewer", PASSWORDS["viewer"]), timeout=10,
                             headers={"Content-Type": "text/xml", "SOAPAction": '"userAdd"',
                                      "Content-Encoding": "gzip"})
    assert response.status_code == 500 and b"access denied" in response.content
    assert b"Client.Forbidden" in response.content
    with api.store.transaction(read_only=True) as session:
        [row] = [r for r in recent(session) if r.operation == "userAdd"]
    assert row.username == "viewer" and row.outcome.startswith("fault: access denied")


def test_empty_soapaction_peeks_the_operation_before_inflating(api: Api) -> None:
    bomb = gzip.compress(USER_ADD.encode()[:-40] + b" " * (100 << 20))
    response = requests.post(api.url, data=bomb, auth=("viewer", PASSWORDS["viewer"]), timeout=10,
                             headers={"Content-Type": "text/xml", "SOAPAction": '""',
                                      "Content-Encoding": "gzip"})
    assert b"access denied: this user may not call userAdd" in response.content


def test_soapaction_must_name_the_operation_in_the_body(api: Api) -> None:
    response = requests.post(api.url, data=USER_ADD, auth=("viewer", PASSWORDS["viewer"]),
                             timeout=10, headers={"Content-Type": "text/xml",
                                                  "SOAPAction": '"login"'})
    assert b"SOAPAction names login but the body calls userAdd" in response.content
    assert "evil" not in users(api)


def test_ordinary_operations_get_a_small_inflated_cap(api: Api) -> None:
    big = ENV.format("<tns:mailQueueCount><tns:filter>" + "x" * (2 << 20)
                     + "</tns:filter></tns:mailQueueCount>")
    response = requests.post(api.url, data=gzip.compress(big.encode()), auth=AUTH, timeout=10,
                             headers={"Content-Type": "text/xml", "SOAPAction": "mailQueueCount",
                                      "Content-Encoding": "gzip"})
    assert response.status_code == 413


def test_arrays_are_capped_in_items(api: Api) -> None:
    items = "<tns:item>x</tns:item>" * 10_001
    body = ENV.format(f"<tns:userAdd><tns:username>many</tns:username><tns:password>p</tns:password>"
                      f"<tns:role>custom</tns:role><tns:operations>{items}</tns:operations>"
                      f"</tns:userAdd>")
    response = requests.post(api.url, data=body, auth=AUTH, timeout=10,
                             headers={"Content-Type": "text/xml", "SOAPAction": "userAdd"})
    assert response.status_code == 500 and b"at most 10000 per array" in response.content
    assert "many" not in users(api)
