"""scriptTest over the live SOAP server with zeep and PHP's SoapClient."""

from __future__ import annotations

import base64
import concurrent.futures
import shutil
import time
from pathlib import Path

import pytest
import zeep

from appliance.access.audit import recent

from tests.e2e.soap.conftest import Api, api, template_db  # noqa: F401  (fixtures)

EXAMPLE = (Path(__file__).resolve().parents[3] / "appliance/policy/examples/ratelimit.lua").read_text()
OVER_LIMIT = EXAMPLE.replace("LIMIT, HOUR, DAY = 100,", "LIMIT, HOUR, DAY = 0,")  # every message is over
DATA = """
function data(s, msg)
  echo("from " .. s.sender .. " via " .. s.client_ip)
  add_header("X-Tested", msg:header("subject"))
  stat("test", "data", s.sender)
  if queue_metric("domain", "outside.example") > 0 then return quarantine("busy") end
  return accept()
end
"""


def test_script_test_over_zeep(api: Api) -> None:
    api.queue(rcpts=("bob@outside.example",))  # queue_metric reads the real queue (read-only)
    client = api.zeep()
    envelope = {"sender": "alice@example.org", "recipients": {"item": ["a@x.example", "b@x.example"]},
                "clientip": "192.0.2.4", "saslusername": "alice"}
    items = client.service.scriptTest(flow="rcpt_to", script=EXAMPLE, message=b"", envelope=envelope)
    assert [(i.kind, i.text.decode()) for i in items] == [
        ("call", "rate('sasl-messages', 'alice', 100, 3600) -> true"),
        ("call", "stat('policy', 'sasl-message', 'alice', 1)"),
        ("decision", "accept"),
        ("decision", "accept"),  # the second recipient of the same message is not counted
    ]
    items = client.service.scriptTest(flow="rcpt_to", script=OVER_LIMIT, message=b"", envelope=envelope)
    lines = [(i.kind, i.text.decode()) for i in items]
    assert lines[0] == ("output", "[warning] alice is over 0 messages an hour")
    assert ("call", "rate('sasl-limit-warning', 'alice', 1, 86400) -> true") in lines
    assert any(k == "call" and t.startswith("mail('', 'postmaster@example.com'") for k, t in lines)
    assert [t for k, t in lines if k == "decision"] == [
        "defer 451 text='4.7.1 Too many messages from alice, try again later'", "accept"]
    message = b"Subject: hi there\r\nFrom: alice@example.org\r\n\r\nbody\r\n"
    items = client.service.scriptTest(flow="data", script=DATA, message=message, envelope=envelope)
    assert [(i.kind, i.text.decode()) for i in items] == [
        ("output", "from alice@example.org via 192.0.2.4"),
        ("call", "stat('test', 'data', 'alice@example.org', 1)"),
        ("call", "add_header('X-Tested', 'hi there')"),
        ("decision", "quarantine quarantine='busy'"),
    ]
    with api.store.transaction(read_only=True) as session:  # nothing was queued by mail()
        from appliance.queue.store import counts_by_state
        assert sum(counts_by_state(session).values()) == 1


def test_script_test_faults_and_errors_over_zeep(api: Api) -> None:
    client = api.zeep()
    with pytest.raises(zeep.exceptions.Fault, match="does not compile"):
        client.service.scriptTest(flow="connect", script="function connect(", message=b"", envelope=None)
    with pytest.raises(zeep.exceptions.Fault, match="flow must be one of"):
        client.service.scriptTest(flow="bogus", script="", message=b"", envelope=None)
    items = client.service.scriptTest(flow="connect", script="function connect(s) os.execute('id') end",
                                      message=b"", envelope=None)
    assert items[-1].kind == "error" and b"attempt to call a nil value (field 'execute')" in items[-1].text


def test_script_test_is_audited_and_refused_to_read_only_users(api: Api) -> None:
    admin, viewer = api.zeep(), api.zeep("viewer")
    admin.service.scriptTest(flow="connect", script="function connect(s) return reject(554, 'no') end",
                             message=b"Subject: x\r\n\r\n", envelope=None)
    with pytest.raises(zeep.exceptions.Fault, match="faultcode|compile"):
        admin.service.scriptTest(flow="connect", script="function connect(", message=b"", envelope=None)
    # It runs code the caller sends: not for read-only users (they still read everything else).
    with pytest.raises(zeep.exceptions.Fault, match="access denied: this user may not call scriptTest"):
        viewer.service.scriptTest(flow="connect", script="", message=b"", envelope=None)
    assert viewer.service.getSerial() == "SERIAL-E2E"
    with api.store.transaction(read_only=True) as session:
        rows = [(r.username, r.operation, r.outcome[:24], r.arguments) for r in recent(session)[:3]]
    assert [row[:3] for row in rows] == [
        ("viewer", "scriptTest", "fault: access denied: th"),
        ("admin", "scriptTest", "fault: script 'scriptTes"),
        ("admin", "scriptTest", "ok")]
    assert '"flow": "connect"' in rows[2][3] and "reject(554" in rows[2][3] and '"<14 bytes>"' in rows[2][3]


ESCAPE = "function connect(s) xpcall(function() while true do end end, function() while true do end end) end"


def test_script_test_escape_through_xpcall_returns_within_the_bound(api: Api) -> None:
    client = api.zeep()
    started = time.monotonic()
    items = client.service.scriptTest(flow="connect", script=ESCAPE, message=b"", envelope=None)
    assert time.monotonic() - started < 2.0
    assert (items[-1].kind, items[-1].text) == ("error", b"script 'scriptTest': instruction limit exceeded")
    # A top level that spins in a handler is refused at compile time, within the bound too.
    started = time.monotonic()
    with pytest.raises(zeep.exceptions.Fault, match="instruction limit exceeded"):
        client.service.scriptTest(flow="connect", script="xpcall(function() while true do end end,"
                                  " function() while true do end end)", message=b"", envelope=None)
    assert time.monotonic() - started < 2.0


def test_concurrent_escapes_leave_the_api_answering(api: Api) -> None:
    """16 such calls took the API down before; now each ends at its deadline."""
    script = ("function connect(s) local b = string.rep('a', 4 * 1024 * 1024)"
              " xpcall(function() for i = 1, 1e9 do b = b:gsub('z', 'y') end end,"
              " function() while true do end end) end")

    def one() -> tuple[float, str]:
        started = time.monotonic()
        items = api.zeep().service.scriptTest(flow="connect", script=script, message=b"", envelope=None)
        return time.monotonic() - started, items[-1].text.decode()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: one(), range(8)))
    assert all(text == "script 'scriptTest': time limit exceeded" for _, text in results), results
    assert max(elapsed for elapsed, _ in results) < 8.0  # 8 one-second runs sharing 2 cores
    started = time.monotonic()
    assert api.zeep().service.getSerial() == "SERIAL-E2E"
    assert time.monotonic() - started < 1.0


def test_script_test_http_refuses_file_options_and_the_node_itself(api: Api) -> None:
    script = ("function connect(s)\n"
              "  local ok, e = pcall(http, 'https://127.0.0.1:1/', {ca_file = '/etc/passwd'}) echo(e)\n"
              "  ok, e = pcall(http, 'https://127.0.0.1:1/', {ca_file = '/nonexistent'}) echo(e)\n"
              "  ok, e = pcall(http, '" + api.url + "') echo(e)\n"
              "end")
    items = api.zeep().service.scriptTest(flow="connect", script=script, message=b"", envelope=None)
    assert [i.text.decode() for i in items if i.kind == "output"] == [
        "http(): the ca_file option is not available here",
        "http(): the ca_file option is not available here",
        "http(): 127.0.0.1 is not an allowed destination (policy.http_allow)"]


@pytest.mark.skipif(shutil.which("php") is None, reason="php-cli is not installed")
def test_script_test_over_php(api: Api) -> None:
    [single, many] = api.php([
        ("scriptTest", {"flow": "connect", "script": "function connect(s) print('hi ' .. s.helo) return reject(554, 'no') end",
                        "message": "", "envelope": {"helo": "php.example"}}),
        ("scriptTest", {"flow": "rcpt_to", "script": OVER_LIMIT, "message": "",
                        "envelope": {"recipients": ["a@x"], "saslusername": "bob"}}),
    ])
    items = single["ok"]["result"]["item"]  # SOAP_SINGLE_ELEMENT_ARRAYS: always a list
    assert [(i["kind"], i["text"]) for i in items] == [("output", "hi php.example"),
                                                      ("decision", "reject 554 text='no'")]
    texts = [i["text"] for i in many["ok"]["result"]["item"]]
    assert texts[-1] == "defer 451 text='4.7.1 Too many messages from bob, try again later'"
    assert base64.b64encode(b"x")  # PHP decoded base64Binary itself: the texts above are plain
