"""http() against real servers on loopback: schemes on every hop, the allow-list, file options, deadlines."""

from __future__ import annotations

import http.server
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.config.document import ConfigError, parse
from appliance.config.schema import PolicySection
from appliance.policy.flow import SessionInfo
from appliance.policy.functions import Functions
from appliance.policy.http import Destinations, UrllibHttpClient
from appliance.policy.sandbox import Limits, ScriptError
from appliance.policy.scripted import ScriptedFlow

LOOPBACK_V4 = ["127.0.0.1/32"]


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    hits: list[str]
    target: str  # where /elsewhere redirects to


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        if self.path == "/ftp":
            self._redirect("ftp://127.0.0.1/etc/passwd")
        elif self.path == "/file":
            self._redirect("file:///etc/passwd")
        elif self.path == "/elsewhere":
            self._redirect(self.server.target)
        elif self.path == "/hop":
            self._redirect("/ok")
        elif self.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):  # one byte every 0.1 s: each read is quick, the total is not
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                return
        else:
            self._answer(200, b"ok")

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


class _V6Server(_Server):
    address_family = socket.AF_INET6


def _serve(server: _Server) -> Iterator[_Server]:
    server.hits = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def other() -> Iterator[_Server]:
    """A second web server, on ::1: outside an allow-list of 127.0.0.1 only."""
    yield from _serve(_V6Server(("::1", 0), _Handler))


@pytest.fixture
def web(other: _Server) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.target = f"http://[::1]:{other.server_address[1]}/secret"
    yield from _serve(server)


def _url(server: _Server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_allowed_destination_and_same_host_redirects_work(web: _Server) -> None:
    client = UrllibHttpClient(allow=lambda: LOOPBACK_V4)
    answer = client.request(_url(web, "/hop"))
    assert (answer.status, answer.body) == (200, b"ok")
    assert web.hits == ["/hop", "/ok"]


@pytest.mark.parametrize("path, scheme", [("/ftp", "ftp"), ("/file", "file")])
def test_a_redirect_to_another_scheme_is_refused(web: _Server, path: str, scheme: str) -> None:
    client = UrllibHttpClient(allow=lambda: LOOPBACK_V4)
    with pytest.raises(ScriptError, match=f"redirect to a {scheme}: URL is refused"):
        client.request(_url(web, path))


def test_a_redirect_to_a_host_outside_the_allow_list_never_reaches_it(web: _Server, other: _Server) -> None:
    client = UrllibHttpClient(allow=lambda: LOOPBACK_V4)
    with pytest.raises(ScriptError, match=r"::1 is not an allowed destination"):
        client.request(_url(web, "/elsewhere"))
    assert web.hits == ["/elsewhere"] and other.hits == []
    # The same server is reachable once its address is listed.
    both = UrllibHttpClient(allow=lambda: LOOPBACK_V4 + ["::1"])
    assert both.request(_url(web, "/elsewhere")).body == b"ok"
    assert other.hits == ["/secret"]


def test_the_default_allow_list_keeps_scripts_off_the_node_and_its_networks(web: _Server) -> None:
    assert PolicySection().http_allow == ["public"]
    client = UrllibHttpClient()  # default: "public"
    with pytest.raises(ScriptError, match="127.0.0.1 is not an allowed destination"):
        client.request(_url(web, "/ok"))
    with pytest.raises(ScriptError, match="localhost is not an allowed destination"):
        client.request(f"http://localhost:{web.server_address[1]}/ok")
    assert web.hits == []
    public = Destinations(["public"])
    for address in ("127.0.0.1", "10.1.2.3", "192.168.1.1", "172.16.0.1", "169.254.169.254", "::1",
                    "fe80::1", "fc00::1", "0.0.0.0", "::ffff:127.0.0.1", "224.0.0.1"):
        assert not public.allows_address(ipaddress.ip_address(address)), address
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"):
        assert public.allows_address(ipaddress.ip_address(address)), address


def test_a_listed_host_name_is_allowed_whatever_it_resolves_to(web: _Server) -> None:
    client = UrllibHttpClient(allow=lambda: ["localhost"])
    assert client.request(f"http://localhost:{web.server_address[1]}/ok").body == b"ok"
    with pytest.raises(ScriptError, match="not an allowed destination"):
        client.request(_url(web, "/ok"))  # 127.0.0.1 by address is not "localhost"


def test_allow_list_entries_are_checked_in_the_config() -> None:
    assert PolicySection(http_allow=["10.0.0.1", "10.0.0.0/8", "*.Example.com", "public"]).http_allow == [
        "10.0.0.1/32", "10.0.0.0/8", "*.example.com", "public"]
    with pytest.raises(ValueError, match="http_allow entry 'ftp://x' is not"):
        PolicySection(http_allow=["ftp://x"])
    with pytest.raises(ConfigError, match="line 2, column 1: policy.http_allow: http_allow entry '10.0.0.0/33'"):
        parse('[policy]\nhttp_allow = ["10.0.0.0/33"]\n')
    assert parse('[policy]\nhttp_allow = []\n').policy.http_allow == []  # http() reaches nothing


def test_ca_file_is_refused_without_looking_when_files_are_off(web: _Server, tmp_path: Path) -> None:
    existing = tmp_path / "exists.pem"
    existing.write_text("not a certificate")
    client = UrllibHttpClient(allow=lambda: LOOPBACK_V4, files=False)
    for path in (str(existing), str(tmp_path / "missing.pem"), "/etc/passwd"):
        with pytest.raises(ScriptError) as caught:
            client.request("https://127.0.0.1:1/", ca_file=path)
        assert str(caught.value) == "http(): the ca_file option is not available here"


def test_ca_file_errors_do_not_tell_whether_the_file_exists(tmp_path: Path) -> None:
    existing = tmp_path / "exists.pem"
    existing.write_text("not a certificate")
    client = UrllibHttpClient(allow=lambda: LOOPBACK_V4)
    messages = set()
    for path in (str(existing), str(tmp_path / "missing.pem"), str(tmp_path)):
        with pytest.raises(ScriptError) as caught:
            client.request("https://127.0.0.1:1/", ca_file=path)
        messages.add(str(caught.value))
    assert messages == {"http(): ca_file could not be used"}


def test_one_call_has_one_total_deadline_against_a_slow_drip(web: _Server) -> None:
    client = UrllibHttpClient(allow=lambda: LOOPBACK_V4)
    started = time.monotonic()
    with pytest.raises(ScriptError, match="timed out"):
        client.request(_url(web, "/drip"), timeout=0.5)  # each byte comes within 0.1 s
    assert time.monotonic() - started < 1.5


def _flow(web: _Server, body: str, limits: Limits) -> ScriptedFlow:
    script = f"URL = {_url(web, '')!r}\nfunction connect(s)\n{body}\nend\n"
    return ScriptedFlow(script, name="loop", limits=limits,
                        functions=Functions(http=UrllibHttpClient(allow=lambda: LOOPBACK_V4)))


def test_a_loop_of_http_calls_stops_at_the_calls_budget(web: _Server, caplog: pytest.LogCaptureFixture) -> None:
    flow = _flow(web, "for i = 1, 1000 do pcall(http, URL .. '/ok') end return reject(550, 'done')",
                 Limits(http_calls=3))
    assert flow.connect(SessionInfo(listener="in", client_ip="192.0.2.1")).code == 550
    assert web.hits == ["/ok"] * 3  # the other 997 were refused before any request


def test_a_loop_of_slow_http_calls_stops_at_the_time_budget(web: _Server) -> None:
    flow = _flow(web, "for i = 1, 1000 do pcall(http, URL .. '/drip', {timeout = 10}) end return reject(550, 'x')",
                 Limits(http_calls=1000, http_seconds=1.0, seconds=0.5))
    started = time.monotonic()
    assert flow.connect(SessionInfo(listener="in", client_ip="192.0.2.1")).code == 550
    assert time.monotonic() - started < 2.5
    assert 1 <= len(web.hits) <= 2
