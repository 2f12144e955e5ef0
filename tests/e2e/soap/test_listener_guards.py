"""The API listener under hostile connections: silent TLS clients, slowloris, connection caps."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from appliance.db.engine import Store
from appliance.queue.spool import Spool
from appliance.soap.calls import NodeContext
from appliance.soap.server import Listen, SoapServer
from appliance.tls import ensure_certificate
from tests.e2e.soap.conftest import PASSWORDS

LOGIN = ('<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="urn:halon">'
         '<e:Body><t:login/></e:Body></e:Envelope>')
SOAP = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"login"'}
AUTH = ("admin", PASSWORDS["admin"])
ATTACKER = "127.0.0.2"  # loopback, but another client address than the well-behaved client


@pytest.fixture
def make_server(tmp_path: Path, template_db: Path) -> Iterator[Callable[..., SoapServer]]:
    started: list[tuple[SoapServer, Store]] = []

    def make(scheme: str = "http", **options: Any) -> SoapServer:
        db = tmp_path / f"store{len(started)}.db"
        shutil.copy(template_db, db)
        store = Store(f"sqlite:///{db}")
        context = NodeContext(store=store, spool=Spool(tmp_path / "spool"), serial="SERIAL",
                              hostname="node.test")
        tls = ensure_certificate(tmp_path / "tls", "node.test") if scheme == "https" else None
        server = SoapServer(context, Listen.parse(f"{scheme}://127.0.0.1:0"), tls_files=tls,
                            **options)
        server.start()
        started.append((server, store))
        return server

    yield make
    for server, store in started:
        server.stop()
        store.dispose()


def login(server: SoapServer, *, verify: Any = True) -> requests.Response:
    return requests.post(server.url, data=LOGIN, headers=SOAP, auth=AUTH, timeout=10,
                         verify=verify)


def connect(server: SoapServer, source: str = ATTACKER) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10,
                                    source_address=(source, 0))
    return sock


def closed_by_server(sock: socket.socket, timeout: float = 10.0) -> bool:
    """Whether the server closes `sock` (EOF or reset) within `timeout`; reads what it sent."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_silent_tcp_connections_do_not_stall_https(make_server: Callable[..., SoapServer],
                                                   tmp_path: Path) -> None:
    server = make_server("https")
    cert = _cert_file(tmp_path / "tls")
    silent = [connect(server) for _ in range(20)]  # TCP only: never a ClientHello
    try:
        started = time.monotonic()
        response = login(server, verify=cert)
        elapsed = time.monotonic() - started
        assert response.status_code == 200 and b">true<" in response.content
        assert elapsed < 1.0, f"a real client waited {elapsed:.2f} s behind silent connections"
    finally:
        for sock in silent:
            sock.close()


def test_a_stalled_tls_handshake_is_cut_at_the_deadline(make_server: Callable[..., SoapServer],
                                                        tmp_path: Path) -> None:
    server = make_server("https", header_timeout=0.5)
    stalled = connect(server)
    stalled.sendall(b"\x16\x03\x01\x00\xc8\x01")  # the start of a ClientHello, then nothing
    try:
        assert closed_by_server(stalled)
        assert login(server, verify=_cert_file(tmp_path / "tls")).status_code == 200
    finally:
        stalled.close()


def test_slowloris_loses_its_connection_at_the_header_deadline(
        make_server: Callable[..., SoapServer]) -> None:
    server = make_server(header_timeout=0.5, threads=4, max_connections_per_address=2)
    slow = [connect(server) for _ in range(2)]
    for sock in slow:
        sock.sendall(b"POST /remote/ HTTP/1.1\r\nHost: x\r\n")  # the rest never comes
    try:
        started = time.monotonic()
        assert login(server).status_code == 200
        assert time.monotonic() - started < 1.0
        assert all(closed_by_server(sock) for sock in slow)
    finally:
        for sock in slow:
            sock.close()


def test_excess_busy_connections_from_one_address_get_503_at_once(
        make_server: Callable[..., SoapServer], caplog: pytest.LogCaptureFixture) -> None:
    server = make_server(max_connections_per_address=3, header_timeout=30)
    busy = [connect(server) for _ in range(3)]
    for sock in busy:  # each holds a worker, reading a head that does not end
        sock.sendall(b"GET /remote/ HTTP/1.1\r\n")
    _wait(lambda: server.heads_in_progress == 3)
    extra = [connect(server) for _ in range(10)]
    try:
        for sock in extra:
            sock.settimeout(1.0)
            assert sock.recv(4096).startswith(b"HTTP/1.1 503 ")
        assert login(server).status_code == 200  # another address is served meanwhile
        refusals = [r for r in caplog.records if "open from one address" in r.getMessage()]
        assert len(refusals) == 1  # one line for the condition, not one per accept
    finally:
        for sock in busy + extra:
            sock.close()


def test_idle_connections_make_room_instead_of_refusing(
        make_server: Callable[..., SoapServer]) -> None:
    server = make_server(max_connections_per_address=3)
    idle = [connect(server) for _ in range(3)]
    _wait(lambda: server.connections.count == 3)
    try:
        fresh = connect(server)
        fresh.sendall(b"GET /remote/ HTTP/1.1\r\nHost: x\r\n\r\n")
        fresh.settimeout(5)
        assert fresh.recv(4096).startswith(b"HTTP/1.1 401 ")  # served, not 503
        assert closed_by_server(idle[0])  # the longest idle one made room
        fresh.close()
    finally:
        for sock in idle:
            sock.close()


def test_total_cap(make_server: Callable[..., SoapServer]) -> None:
    server = make_server(max_connections=4, max_connections_per_address=4, header_timeout=30)
    busy = []
    for i in range(4):
        sock = connect(server, f"127.0.0.{10 + i}")
        sock.sendall(b"GET /remote/ HTTP/1.1\r\n")
        busy.append(sock)
    _wait(lambda: server.heads_in_progress == 4)
    try:
        late = connect(server, "127.0.0.20")
        late.settimeout(1.0)
        assert late.recv(4096).startswith(b"HTTP/1.1 503 ")
        late.close()
    finally:
        for sock in busy:
            sock.close()
    _wait(lambda: server.connections.count == 0)
    assert login(server).status_code == 200


def _cert_file(tls_dir: Path) -> str:
    [cert] = [p for p in tls_dir.iterdir() if p.suffix in (".crt", ".pem") and "key" not in p.name]
    return str(cert)


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)
