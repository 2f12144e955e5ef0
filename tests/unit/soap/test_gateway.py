"""Pure parts of the gateway: body inflation caps, credentials, Accept-Encoding, faults."""

from __future__ import annotations

import gzip
import io
import zlib
from typing import Any

import pytest

from appliance import errors
from appliance.soap import faults
from appliance.soap.auth import basic_credentials
from appliance.soap.gateway import (
    Gateway, RequestTooLarge, _accepts_gzip, _inflate, _strip_credentials, fault_envelope,
)


@pytest.mark.parametrize("encode", [gzip.compress, zlib.compress,
                                    lambda b: zlib.compress(b, wbits=-15)])
def test_inflate_reads_gzip_zlib_and_raw_deflate(encode: Any) -> None:
    assert _inflate(encode(b"<x/>" * 100), 1000) == b"<x/>" * 100


def test_inflate_stops_at_the_cap() -> None:
    with pytest.raises(RequestTooLarge):
        _inflate(gzip.compress(b"a" * 10_001), 10_000)
    assert len(_inflate(gzip.compress(b"a" * 10_000), 10_000)) == 10_000


def test_basic_credentials() -> None:
    assert basic_credentials("Basic YWRtaW46cDpx") == ("admin", "p:q")
    assert basic_credentials("basic YWRtaW46") == ("admin", "")
    assert basic_credentials("Bearer abc") == (None, None)
    assert basic_credentials("Basic !!!") == (None, None)
    assert basic_credentials("Basic YWRtaW4=") == (None, None)  # no colon


def test_query_credentials_are_removed_from_the_environ() -> None:
    environ = {"QUERY_STRING": "wsdl&username=a&password=secret"}
    assert _strip_credentials(environ) == {"wsdl": "", "username": "a", "password": "secret"}
    assert "secret" not in environ["QUERY_STRING"] and "wsdl" in environ["QUERY_STRING"]


@pytest.mark.parametrize("header, expected", [
    ("gzip, deflate", True), ("deflate", False), ("", False), ("gzip;q=0", False),
    ("identity, *", True), ("GZIP;q=0.5", True),
])
def test_accepts_gzip(header: str, expected: bool) -> None:
    assert _accepts_gzip(header) is expected


def test_fault_envelope_escapes() -> None:
    body = fault_envelope("Client", "bad <tag> & more")
    assert b"bad &lt;tag&gt; &amp; more" in body and b"soap11env:Client" in body


def test_fault_table_maps_every_domain_error() -> None:
    cases = {
        errors.FilterError(3, "x"): "Client.InvalidFilter", errors.InvalidInput("x"): "Client.InvalidInput",
        errors.NotFound("x"): "Client.NotFound", errors.Forbidden("x"): "Client.Forbidden",
        errors.Unauthorized("x"): "Client.Unauthorized", errors.Conflict("x"): "Client.Conflict",
        errors.StoreUnavailable("x"): "Server.Unavailable", errors.ApplianceError("x"): "Server",
    }
    for exc, code in cases.items():
        fault = faults.to_fault(exc)
        assert fault.faultcode == code and fault.faultstring == str(exc)


class _Auth:
    def check(self, name: str, password: str, remote: str) -> Any:
        from appliance.access.levels import ADMIN
        from appliance.soap.auth import Login
        return Login(name, ADMIN) if password == "pw" else Login()


def test_an_exception_inside_spyne_becomes_a_client_fault() -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> Any:
        raise ValueError("Incorrect padding")

    gateway = Gateway(broken, authenticator=_Auth(), wsdl=b"", page=b"",  # type: ignore[arg-type]
                      max_request_bytes=1000)
    seen: dict[str, Any] = {}
    body = b"".join(gateway({
        "PATH_INFO": "/remote/", "REQUEST_METHOD": "POST", "HTTP_AUTHORIZATION": "Basic YTpwdw==",
        "wsgi.input": io.BytesIO(b"<x/>"), "CONTENT_LENGTH": "4", "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "text/xml", "HTTP_SOAPACTION": '""',
    }, lambda status, headers, exc=None: seen.update(status=status)))
    assert seen["status"].startswith("500")
    assert b"soap11env:Client" in body and b"Incorrect padding" in body
