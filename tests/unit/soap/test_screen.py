"""The gateway's pure request checks: CSRF, encodings, operation names, array caps."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.soap.screen import (
    Refused, action_operation, check_csrf, check_encoding, peek_operation, scan,
)

ENV = ('<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="urn:halon">'
       '<e:Header><t:x/></e:Header><e:Body>{}</e:Body></e:Envelope>')


def environ(**values: str) -> dict[str, Any]:
    return {"HTTP_HOST": "node.test:8443", "wsgi.url_scheme": "https", **values}


@pytest.mark.parametrize("values, status", [
    ({"CONTENT_TYPE": "text/plain", "HTTP_SOAPACTION": "x"}, "415"),
    ({"CONTENT_TYPE": "application/x-www-form-urlencoded", "HTTP_SOAPACTION": "x"}, "415"),
    ({"CONTENT_TYPE": "text/xml"}, "400"),
    ({"CONTENT_TYPE": "text/xml", "HTTP_SOAPACTION": "", "HTTP_ORIGIN": "https://evil"}, "403"),
    ({"CONTENT_TYPE": "text/xml", "HTTP_SOAPACTION": "", "HTTP_ORIGIN": "null"}, "403"),
])
def test_csrf_refusals(values: dict[str, str], status: str) -> None:
    with pytest.raises(Refused) as refused:
        check_csrf(environ(**values), "")
    assert refused.value.status.startswith(status)


def test_csrf_accepts_soap_clients_and_own_origins() -> None:
    check_csrf(environ(CONTENT_TYPE="text/xml; charset=utf-8", HTTP_SOAPACTION='""'), "")
    check_csrf(environ(CONTENT_TYPE='application/soap+xml; action="urn:halon#login"'), "")
    check_csrf(environ(CONTENT_TYPE="text/xml", HTTP_SOAPACTION="",
                       HTTP_ORIGIN="https://node.test:8443"), "")
    check_csrf(environ(CONTENT_TYPE="text/xml", HTTP_SOAPACTION="",
                       HTTP_ORIGIN="https://api.example"), "https://api.example/remote/")


@pytest.mark.parametrize("action, operation", [
    ('"mailQueue"', "mailQueue"), ("mailQueue", "mailQueue"), ("urn:halon#login", "login"),
    ("https://x/remote/getSerial", "getSerial"), ('""', ""), ("", ""),
])
def test_action_operation(action: str, operation: str) -> None:
    assert action_operation({"HTTP_SOAPACTION": action}) == operation


@pytest.mark.parametrize("body, ctype", [
    ("\ufeff<x/>".encode("utf-16"), "text/xml"),
    ("<x/>".encode("utf-16-le"), "text/xml"),
    ("<x/>".encode("utf-32"), "text/xml"),
    ("<x/>".encode("cp500"), "text/xml"),
    (b"<x/>", "text/xml; charset=utf-16"),
    (b'<?xml version="1.0" encoding="cp500"?><x/>', "text/xml"),
    (b'<?xml version="1.0" encoding="UTF-16"?><x/>', "text/xml"),
    (b"<!DOCTYPE x><x/>", "text/xml"),
    (b"\xef\xbb\xbf<!doctype x><x/>", "text/xml"),
])
def test_encodings_other_than_utf8_and_doctypes_are_refused(body: bytes, ctype: str) -> None:
    with pytest.raises(Refused):
        check_encoding(body, ctype)


def test_utf8_bodies_pass() -> None:
    check_encoding(b'<?xml version="1.0" encoding="UTF-8"?><x>\xc3\xa9</x>', "text/xml; charset=UTF-8")
    check_encoding(b"\xef\xbb\xbf  <x/>", "text/xml; charset=us-ascii")


def test_operation_by_peek_and_by_scan() -> None:
    body = ENV.format("<t:mailQueue><t:filter/></t:mailQueue>").encode()
    assert peek_operation(iter([body[:120], body[120:]])) == "mailQueue"
    assert scan(body, max_items=10) == "mailQueue"
    assert peek_operation(iter([b"not xml"])) == ""


def test_scan_caps_children_of_any_element() -> None:
    items = "<t:item>a</t:item>" * 11
    with pytest.raises(Refused, match="at most 10 per array"):
        scan(ENV.format(f"<t:userAdd><t:operations>{items}</t:operations></t:userAdd>").encode(),
             max_items=10)
    ok = "<t:item>a</t:item>" * 10
    assert scan(ENV.format(f"<t:userAdd><t:operations>{ok}</t:operations></t:userAdd>").encode(),
                max_items=10) == "userAdd"
