"""Script functions: http() against a real loopback server, JSON, logging, scriptTest, api-auth."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from appliance.errors import InvalidInput
from appliance.policy.apiauth import ApiAuthScript
from appliance.policy.flow import Decision, SessionInfo
from appliance.policy.functions import Functions
from appliance.policy.http import UrllibHttpClient
from appliance.policy.scripted import ScriptedFlow
from appliance.policy.scripttest import ScriptTestEnvelope, run_script_test


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        verdict = {"block": body["ip"] == "192.0.2.66", "auth": self.headers.get("X-Token", "")}
        data = json.dumps(verdict).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def web() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


LOOKUP = """
function connect(s)
  local status, headers, body = http(URL .. "/check", {method = "POST", body = json_encode({ip = s.client_ip}),
                                                  headers = {["X-Token"] = "t1"}, timeout = 5})
  if status ~= 200 then return defer(421, "4.3.0 lookup failed " .. status) end
  local answer = json_decode(body)
  echo("auth=" .. answer.auth .. " type=" .. headers["Content-Type"])
  if answer.block then return reject(554, "5.7.1 listed") end
end
function mail_from(s, sender)
  local status = http(URL .. "/missing")
  return defer(450, "4.3.0 got " .. status)
end
"""


def test_http_and_json_against_a_real_server(web: str, caplog: pytest.LogCaptureFixture) -> None:
    flow = ScriptedFlow(f"URL = {web!r}\n{LOOKUP}", name="lookup", functions=Functions(http=UrllibHttpClient(allow=lambda: ["127.0.0.0/8"])))
    with caplog.at_level(logging.INFO, logger="appliance.policy"):
        assert flow.connect(SessionInfo(listener="in", client_ip="192.0.2.66")).decision == Decision.REJECT
        assert flow.connect(SessionInfo(listener="in", client_ip="192.0.2.1")).decision == Decision.ACCEPT
    assert any("echo: auth=t1 type=application/json" in r.getMessage() for r in caplog.records)
    assert flow.mail_from(SessionInfo(listener="in", client_ip="x"), "a@b").text == "4.3.0 got 404"


def test_http_failure_is_a_script_error_the_script_can_catch() -> None:
    flow = ScriptedFlow(
        "function connect(s)\n"
        "  local ok, err = pcall(http, 'http://127.0.0.1:1/')\n"
        "  if not ok then return defer(421, 'lookup down') end\n"
        "end\n"
        "function mail_from(s, f) http('file:///etc/passwd') end",
        name="t", functions=Functions(http=UrllibHttpClient(allow=lambda: ["127.0.0.0/8"])))
    assert flow.connect(SessionInfo(listener="in", client_ip="x")).text == "lookup down"
    assert flow.mail_from(SessionInfo(listener="in", client_ip="x"), "a@b").code == 451


def test_syslog_and_echo_reach_the_node_log(caplog: pytest.LogCaptureFixture) -> None:
    flow = ScriptedFlow("function connect(s) syslog('warning', 'odd client ' .. s.client_ip); print('p') end",
                        name="logger", functions=Functions())
    with caplog.at_level(logging.INFO, logger="appliance.policy"):
        flow.connect(SessionInfo(listener="in", client_ip="192.0.2.5", client_port=4000))
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.WARNING, "policy logger [192.0.2.5:4000] connect: odd client 192.0.2.5") in lines
    assert (logging.INFO, "policy logger [192.0.2.5:4000] connect echo: p") in lines


def test_script_test_reports_decision_output_and_calls_without_side_effects() -> None:
    script = (
        "function rcpt_to(s, r)\n"
        "  echo('checking ' .. r)\n"
        "  stat('test', 'rcpt', r)\n"
        "  if not rate('t', s.sasl, 1, 60) then mail('', 'admin@example.com', 'over', 'x') return defer() end\n"
        "end")
    lines = run_script_test(flow="rcpt_to", script=script,
                            envelope=ScriptTestEnvelope(sasl="u", recipients=["a@x", "b@x"]))
    assert [(ln.kind, ln.text) for ln in lines] == [
        ("output", "checking a@x"),
        ("call", "stat('test', 'rcpt', 'a@x', 1)"),
        ("call", "rate('t', 'u', 1, 60) -> true"),
        ("decision", "none (default)"),
        ("output", "checking b@x"),
        ("call", "stat('test', 'rcpt', 'b@x', 1)"),
        ("call", "rate('t', 'u', 1, 60) -> false"),
        ("call", "mail('', 'admin@example.com', 'over') -> test-1"),
        ("decision", "defer 451"),
    ]
    # Fresh in-memory counters each time: a second test starts from zero again.
    again = run_script_test(flow="rcpt_to", script=script, envelope=ScriptTestEnvelope(sasl="u", recipients=["a@x"]))
    assert ("call", "rate('t', 'u', 1, 60) -> true") in [(ln.kind, ln.text) for ln in again]


def test_script_test_data_flow_and_errors() -> None:
    lines = run_script_test(
        flow="data", script="function data(s, m) add_header('X-A', m.subject) return quarantine('q') end",
        message=b"Subject: hi\r\n\r\nbody")
    assert [(ln.kind, ln.text) for ln in lines] == [("call", "add_header('X-A', 'hi')"),
                                                    ("decision", "quarantine quarantine='q'")]
    failed = run_script_test(flow="connect", script="function connect(s) while true do end end")
    assert failed[-1].kind == "error" and "instruction limit exceeded" in failed[-1].text
    with pytest.raises(InvalidInput, match="does not compile"):
        run_script_test(flow="connect", script="function (")
    with pytest.raises(InvalidInput, match="flow must be one of"):
        run_script_test(flow="nope", script="")


def test_api_auth_script_allows_denies_or_defers_to_levels() -> None:
    script = ApiAuthScript(
        "function api_auth(user, password, operation, args)\n"
        "  if user == 'monitor' and password == 's3cret' and operation:match('^mailQueue') then\n"
        "    if args.filter and args.filter:find('rcpt') then return reject() end\n"
        "    return accept()\n"
        "  end\n"
        "  if operation == 'crash' then error('boom') end\n"
        "end")
    assert script.decide("monitor", "s3cret", "mailQueueCount", {"filter": "from=a"}) is True
    assert script.decide("monitor", "s3cret", "mailQueueCount", {"filter": "rcpt=a"}) is False
    assert script.decide("monitor", "wrong", "mailQueueCount", {}) is None
    assert script.decide("admin", "x", "crash", {}) is None  # a failing script -> built-in levels
