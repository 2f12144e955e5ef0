"""Real SMTP through a running node whose listeners run policy scripts: every flow and decision."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, HistoryMetadata, QueueEntry, QueueMetadata
from tests.e2e.delivery.sink import Sink
from tests.support.node import RunningNode
from tests.support.postgres import free_port
from tests.support.wait import wait_until

MAIN = r'''
function auth(s, user, password)
  if user == "scripted" then return password == "pw" and accept() or reject() end
  if user == "blocked" then return reject() end
end
function mail_from(s, sender)
  local local_part = sender:match("^([^@]*)@") or ""
  if local_part == "reject" then return reject(553, "5.7.1 sender refused by policy") end
  if local_part == "defer" then return defer(450, "4.7.1 sender deferred by policy") end
  if local_part == "quarantine" then return quarantine("mailq") end
  if local_part == "delete" then return delete() end
  set_metadata("sender-seen", sender)
end
function rcpt_to(s, rcpt)
  local l = rcpt:match("^([^@]*)@")
  if l == "reject" then return reject(550, "5.1.1 no such user here") end
  if l == "defer" then return defer(452, "4.2.2 mailbox busy") end
  if l == "quarantine" then return quarantine("rcptq") end
  if l == "delete" then return delete() end
  if l == "route" then return deliver("other") end
end
function data(s, msg)
  if msg.body:find("REJECTME", 1, true) then return reject(554, "5.7.1 content refused") end
  if msg.body:find("DEFERME", 1, true) then return defer(451, "4.7.1 content deferred") end
  if msg.body:find("QUARANTINEME", 1, true) then return quarantine("dataq") end
  if msg.body:find("DELETEME", 1, true) then return delete() end
  add_header("X-Policy", "checked " .. msg:header("subject"))
  remove_header("X-Remove-Me")
  set_metadata("data", (s.sasl ~= "" and s.sasl or "anonymous") .. " " .. s.helo)
end
function pre_delivery(e)
  local l = e.recipient:match("^([^@]*)@")
  set_metadata("pre", "seen")
  if l == "hold" then return quarantine("pre") end
  if l == "bounce" then return reject(550, "5.7.1 not to this one") end
  if l == "drop" then return delete() end
  if l == "later" then return defer(451, "4.3.0 not now") end
  if l == "hop" then return deliver("default", {nexthop = HOP}) end
end
function post_delivery(e, o)
  set_metadata("post", o.action .. " " .. o.code .. " " .. (o.transfertime >= 0 and "t" or "?"))
end
'''

CONFIG = '''
[scripts]
main = """HOP = "127.0.0.1:{hop}"
{main}"""
closed = "function connect(s) return reject(554, '5.7.1 closed to ' .. s.client_ip) end"
busy = "function connect(s) return defer(421, '4.7.0 come back later') end"
broken = """function connect(s) while true do end end
function rcpt_to(s, r) local t = {{}} for i = 1, 1e9 do t[i] = i end end"""

[[listeners]]
id = "main"
port = 2525
auth = true
script = "main"

[[listeners]]
id = "closed"
port = {closed}
script = "closed"

[[listeners]]
id = "busy"
port = {busy}
script = "busy"

[[listeners]]
id = "broken"
port = {broken}
script = "broken"

[[transports]]
id = "default"
nexthop = "127.0.0.1:{sink}"
starttls = "none"

[[transports]]
id = "other"
nexthop = "127.0.0.1:{sink}"
starttls = "none"

[queue]
retry_schedule = [3600]
poll_interval = 0.1
'''


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("policy-e2e")
    ports = {"closed": free_port(), "busy": free_port(), "broken": free_port()}
    with Sink() as sink, Sink() as hop:
        text = CONFIG.format(main=MAIN, hop=hop.port, sink=sink.port, **ports)
        with RunningNode(tmp, config_text=text) as node:
            store = Store(f"sqlite:///{(node.data_dir / 'appliance.db').resolve()}")
            try:
                yield {"node": node, "sink": sink, "hop": hop, "store": store, **ports}
            finally:
                store.dispose()


def _send(port: int, sender: str, rcpts: list[str], body: str = "hello", *,
          login: tuple[str, str] | None = None, extra: str = "") -> Any:
    msg = f"From: {sender}\r\nTo: {', '.join(rcpts)}\r\nSubject: test {body[:10]}\r\n{extra}\r\n{body}\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.ehlo("client.example")
        if login:  # PLAIN only: smtplib's login() would retry with LOGIN after a refusal
            client.user, client.password = login
            client.auth("PLAIN", client.auth_plain)
        return client.sendmail(sender, rcpts, msg)


def _history(store: Store, rcpt: str) -> list[tuple[str, dict[str, str]]]:
    with store.transaction(read_only=True) as s:
        rows = s.execute(select(HistoryEntry.id, HistoryEntry.action).where(HistoryEntry.rcpt == rcpt)
                         .order_by(HistoryEntry.id)).all()
        meta = {r.id: dict(s.execute(select(HistoryMetadata.key, HistoryMetadata.value)
                                     .where(HistoryMetadata.entry_id == r.id)).all()) for r in rows}
    return [(r.action, meta[r.id]) for r in rows]


def _queued(store: Store, rcpt: str) -> list[tuple[str, str, str, str, dict[str, str]]]:
    with store.transaction(read_only=True) as s:
        rows = s.execute(select(QueueEntry).where(QueueEntry.rcpt == rcpt)).scalars().all()
        return [(e.state, e.quarantine, e.transport, e.msgid,
                 dict(s.execute(select(QueueMetadata.key, QueueMetadata.value)
                                .where(QueueMetadata.entry_id == e.id)).all())) for e in rows]


def test_connect_reject_and_defer(env: dict[str, Any]) -> None:
    with pytest.raises(smtplib.SMTPConnectError) as rejected:
        smtplib.SMTP("127.0.0.1", env["closed"], timeout=10)
    assert rejected.value.smtp_code == 554 and b"closed to 127.0.0.1" in rejected.value.smtp_error
    with pytest.raises(smtplib.SMTPConnectError) as deferred:
        smtplib.SMTP("127.0.0.1", env["busy"], timeout=10)
    assert deferred.value.smtp_code == 421


def test_broken_script_connects_but_defers_rcpt(env: dict[str, Any]) -> None:
    with smtplib.SMTP("127.0.0.1", env["broken"], timeout=20) as client:  # connect: safe default accept
        client.ehlo("x")
        client.mail("a@example.org")
        code, text = client.rcpt("b@example.com")
    assert (code, text) == (451, b"4.3.0 Policy temporarily unavailable")
    # The children's log lines reach the supervisor's output through a pipe: wait for them.
    # rcpt_to's table grows until the memory, instruction or time limit stops it, whichever a
    # loaded machine reaches first.
    lines = wait_until(lambda: (lambda out: out if "rcpt_to failed" in out else None)(
        env["node"].output()), what="the rcpt_to failure in the node log")
    assert "connect failed, accept: script 'broken': instruction limit exceeded" in lines
    assert any("rcpt_to failed" in line and "limit exceeded" in line for line in lines.splitlines())


def test_auth_script_accepts_rejects_and_falls_through(env: dict[str, Any]) -> None:
    port = env["node"].smtp_port
    _send(port, "a@example.org", ["auth-ok@example.com"], login=("scripted", "pw"))
    _send(port, "a@example.org", ["auth-admin@example.com"], login=("admin", env["node"].admin_password))
    for user, password in (("blocked", "any"), ("scripted", "wrong")):
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            _send(port, "a@example.org", ["auth-no@example.com"], login=(user, password))
        assert refused.value.smtp_code == 535
    [(action, meta)] = wait_until(lambda: _history(env["store"], "auth-ok@example.com"))
    assert action == "DELIVER" and meta["data"] == "scripted client.example"
    assert wait_until(lambda: _history(env["store"], "auth-admin@example.com"))[0][1]["data"].startswith("admin ")


def test_mail_from_decisions(env: dict[str, Any]) -> None:
    port = env["node"].smtp_port
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        _send(port, "reject@example.org", ["x@example.com"])
    assert refused.value.smtp_code == 553 and b"sender refused by policy" in refused.value.smtp_error
    with pytest.raises(smtplib.SMTPSenderRefused) as deferred:
        _send(port, "defer@example.org", ["x@example.com"])
    assert deferred.value.smtp_code == 450
    _send(port, "quarantine@example.org", ["mq@example.com"])
    [(state, quarantine, *_)] = _queued(env["store"], "mq@example.com")
    assert (state, quarantine) == ("HOLD", "mailq")
    _send(port, "delete@example.org", ["md@example.com"])
    assert wait_until(lambda: _history(env["store"], "md@example.com"))[0][0] == "DELETE"


def test_rcpt_decisions(env: dict[str, Any]) -> None:
    port = env["node"].smtp_port
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.ehlo("client.example")
        client.mail("s@example.org")
        assert client.rcpt("reject@example.com") == (550, b"5.1.1 no such user here")
        assert client.rcpt("defer@example.com") == (452, b"4.2.2 mailbox busy")
        for rcpt in ("delete@r.example", "route@r.example", "plain@r.example"):
            assert client.rcpt(rcpt)[0] == 250
        code, _ = client.data(b"Subject: rcpt\r\nX-Remove-Me: 1\r\n\r\nbody\r\n")
    assert code == 250
    _send(port, "s@example.org", ["quarantine@r.example"])  # quarantine holds the whole message
    [(state, quarantine, _, _, meta)] = _queued(env["store"], "quarantine@r.example")
    assert (state, quarantine) == ("HOLD", "rcptq")
    assert meta["sender-seen"] == "s@example.org"
    assert wait_until(lambda: _history(env["store"], "delete@r.example"))[0][0] == "DELETE"
    assert wait_until(lambda: _history(env["store"], "route@r.example"))[0][0] == "DELIVER"
    assert wait_until(lambda: _history(env["store"], "plain@r.example"))[0][0] == "DELIVER"
    with env["store"].transaction(read_only=True) as s:
        routed = s.scalar(select(HistoryEntry.transport).where(HistoryEntry.rcpt == "route@r.example"))
    assert routed == "other"


def test_data_decisions_and_header_edits(env: dict[str, Any]) -> None:
    port = env["node"].smtp_port
    for word, code in (("REJECTME", 554), ("DEFERME", 451)):
        with pytest.raises(smtplib.SMTPDataError) as refused:
            _send(port, "s@example.org", ["d@example.com"], f"please {word}")
        assert refused.value.smtp_code == code
    _send(port, "s@example.org", ["dq@example.com"], "QUARANTINEME")
    assert _queued(env["store"], "dq@example.com")[0][:2] == ("HOLD", "dataq")
    _send(port, "s@example.org", ["dd@example.com"], "DELETEME")
    assert wait_until(lambda: _history(env["store"], "dd@example.com"))[0][0] == "DELETE"
    _send(port, "s@example.org", ["dok@example.com"], "fine", extra="X-Remove-Me: yes\r\n")
    received = wait_until(lambda: [m for m in env["sink"].messages if "dok@example.com" in m.rcpt_tos])
    content = received[0].content
    assert b"X-Policy: checked test fine" in content and b"X-Remove-Me" not in content
    # post_delivery runs after the DELIVER row is committed: wait for its metadata too.
    [(action, meta)] = wait_until(lambda: [h for h in _history(env["store"], "dok@example.com")
                                      if "post" in h[1]])
    assert action == "DELIVER"
    assert meta["data"] == "anonymous client.example" and meta["pre"] == "seen"
    assert meta["post"] == "DELIVER 250 t"


def test_pre_and_post_delivery_decisions(env: dict[str, Any]) -> None:
    port = env["node"].smtp_port
    rcpts = ["bounce@p.example", "drop@p.example", "later@p.example", "hop@p.example"]
    _send(port, "s@example.org", rcpts)
    assert wait_until(lambda: _history(env["store"], "bounce@p.example"))[0][0] == "BOUNCE"
    assert wait_until(lambda: _history(env["store"], "drop@p.example"))[0][0] == "DELETE"
    assert wait_until(lambda: _history(env["store"], "hop@p.example"))[0][0] == "DELIVER"
    assert wait_until(lambda: [m for m in env["hop"].messages if "hop@p.example" in m.rcpt_tos])
    assert not [m for m in env["sink"].messages if "hop@p.example" in m.rcpt_tos]
    later = wait_until(lambda: [q for q in _queued(env["store"], "later@p.example")
                           if q[0] == "DEFER" and "post" in q[4]])
    assert later[0][4]["post"].startswith("DEFER")


def test_pre_delivery_quarantine_holds_the_entry(env: dict[str, Any]) -> None:
    _send(env["node"].smtp_port, "s@example.org", ["hold@q.example"])
    held = wait_until(lambda: [q for q in _queued(env["store"], "hold@q.example") if q[0] == "HOLD"], timeout=5)
    assert held[0][1] == "pre" and held[0][4]["pre"] == "seen"
