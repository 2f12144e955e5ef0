"""scriptTest over the live SOAP server with zeep and PHP's SoapClient."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest
import zeep

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
    viewer = api.zeep("viewer")  # read-only users may test scripts: nothing changes
    assert viewer.service.scriptTest(flow="connect", script="", message=b"", envelope=None)[0].kind == "decision"


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
