"""R3: hostile requests get a Fault or a 4xx within a second, and the server keeps serving."""

from __future__ import annotations

import gzip
import os
import socket
import time
import zlib
from collections.abc import Iterator

import pytest
import requests

from tests.e2e.soap.conftest import PASSWORDS, Api

AUTH = ("admin", PASSWORDS["admin"])
ENV = ('<soap11env:Envelope xmlns:soap11env="http://schemas.xmlsoap.org/soap/envelope/" '
       'xmlns:tns="urn:halon"><soap11env:Body>{}</soap11env:Body></soap11env:Envelope>')
XXE = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
       + ENV.format("<tns:mailQueueCount><tns:filter>&e;</tns:filter></tns:mailQueueCount>"))
LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">'
                    for i in range(1, 10))
          + "]>" + ENV.format("<tns:mailQueueCount><tns:filter>&lol9;</tns:filter>"
                              "</tns:mailQueueCount>"))
DEEP = ENV.format("<tns:getSerial>" + "<a>" * 100_000 + "</a>" * 100_000 + "</tns:getSerial>")
WRONG_TYPE = ENV.format("<tns:mailQueue><tns:filter></tns:filter><tns:offset>abc</tns:offset>"
                        "<tns:limit>10</tns:limit></tns:mailQueue>")
UNKNOWN_OP = ENV.format("<tns:formatDisk/>")


def post(api: Api, body: bytes | str, **headers: str) -> requests.Response:
    data = body.encode() if isinstance(body, str) else body
    return requests.post(api.url, data=data, auth=AUTH, timeout=10,
                         headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""',
                                  **headers})


@pytest.mark.parametrize("body, expected", [
    (XXE, "DOCTYPE"),
    (LAUGHS, "DOCTYPE"),
    (XXE.replace("<!DOCTYPE", "<!doctype"), "DOCTYPE"),
    (DEEP, ""),
    (WRONG_TYPE, ""),
    (UNKNOWN_OP, ""),
    ("this is not xml", ""),
    (b"\x00\xff\xfe" + os.urandom(2000), ""),
    ("", ""),
    ("<unclosed", ""),
], ids=["xxe", "billion-laughs", "doctype-lowercase", "deep-nesting", "wrong-type",
        "unknown-operation", "text", "binary", "empty", "unclosed"])
def test_hostile_body_is_a_client_fault_quickly(api: Api, body: str | bytes, expected: str) -> None:
    assert post(api, ENV.format("<tns:login/>")).status_code == 200  # credentials now cached
    started = time.monotonic()
    response = post(api, body)
    assert time.monotonic() - started < 1.0
    assert response.status_code == 500  # SOAP 1.1 faults travel with HTTP 500
    assert b"<faultcode>soap11env:Client" in response.content, response.content[:500]
    assert expected.encode() in response.content
    assert b"root:" not in response.content  # nothing of /etc/passwd
    assert api.zeep().service.getSerial() == "SERIAL-E2E"


def test_oversize_body_by_length_is_413_without_reading_it(api: Api) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", api.server.port), timeout=5) as sock:
        sock.sendall(b"POST /remote/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
                     + _basic() + b"\r\nContent-Type: text/xml\r\n"
                     b"SOAPAction: \"\"\r\nContent-Length: 104857600\r\n\r\n" + b"<" * 65536)
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413") and time.monotonic() - started < 1.0
    assert api.zeep().service.getSerial() == "SERIAL-E2E"


def test_oversize_streamed_body_is_refused(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(1600):  # 100 MiB, stopped by the server after its 1 MiB cap
            yield b"x" * 65536

    started = time.monotonic()
    try:
        response = requests.post(api.url, data=chunks(), auth=AUTH, timeout=10,
                                 headers={"Content-Type": "text/xml", "SOAPAction": ""})
        assert response.status_code == 413
    except requests.ConnectionError:
        pass  # the server may close while we are still sending: refused either way
    assert time.monotonic() - started < 5.0
    assert api.zeep().service.getSerial() == "SERIAL-E2E"


@pytest.mark.parametrize("encode", [gzip.compress, zlib.compress], ids=["gzip", "deflate"])
def test_compression_bomb_is_413(api: Api, encode) -> None:  # type: ignore[no-untyped-def]
    bomb = encode(b"<" + b" " * (100 << 20))  # 100 MiB inflated, ~100 KiB on the wire
    started = time.monotonic()
    response = post(api, bomb, SOAPAction="mailQueueCount",
                    **{"Content-Encoding": "gzip" if encode is gzip.compress else "deflate"})
    assert response.status_code == 413 and time.monotonic() - started < 1.0


def test_corrupt_gzip_and_unknown_encoding_are_faults(api: Api) -> None:
    assert b"could not read" in post(api, b"\x1f\x8bnot gzip", **{"Content-Encoding": "gzip"}).content
    assert b"Content-Encoding" in post(api, b"<x/>", **{"Content-Encoding": "br"}).content


def test_gzip_request_and_response(api: Api) -> None:
    body = ENV.format("<tns:mailQueue><tns:filter></tns:filter><tns:offset>0</tns:offset>"
                      "<tns:limit>5</tns:limit></tns:mailQueue>")
    api.queue(subject="zipped")
    response = post(api, gzip.compress(body.encode()), **{"Content-Encoding": "gzip",
                                                          "Accept-Encoding": "gzip"})
    assert response.status_code == 200 and response.headers["Content-Encoding"] == "gzip"
    assert b"emlwcGVk" in response.content  # base64 of the subject; requests inflated it
    plain = post(api, body, **{"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and b"emlwcGVk" in plain.content


def test_other_paths_and_methods(api: Api) -> None:
    assert requests.get(api.url.replace("/remote/", "/etc/passwd"), auth=AUTH, timeout=5).status_code == 404
    assert requests.put(api.url, data=b"x", auth=AUTH, timeout=5).status_code == 405


def _basic() -> bytes:
    import base64
    return base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode())
