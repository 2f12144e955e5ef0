"""Suspensions, timelines across two nodes, explain and alerts on live nodes over SOAP (zeep)
and the fan-out client: node A relays to node B, which delivers to a loopback sink."""

from __future__ import annotations

import http.server
import json
import smtplib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep

from appliance_client.cluster import Cluster, _items
from appliance_client.node import NodeSpec
from tests.e2e.delivery.sink import Sink
from tests.support.node import RunningNode
from tests.support.wait import wait_until

# B's delivery policy: a rate limit that is always spent for ratelim@, a quarantine for quar@.
POLICY = r'''
function pre_delivery(e)
  local l = e.recipient:match("^([^@]*)@")
  if l == "ratelim" then
    rate("outbound", "ratelim", 1, 3600)
    if not rate("outbound", "ratelim", 1, 3600) then return defer(451, "4.7.1 slow down") end
  end
  if l == "quar" then return quarantine("review") end
end
'''

CONFIG = '''
[node]
name = "{name}"
hostname = "{name}.test"

[scripts]
main = """{policy}"""

[[listeners]]
id = "inbound"
port = 2525
script = "{script}"

[[transports]]
id = "default"
starttls = "none"

[queue]
retry_schedule = [5, 3600]
poll_interval = 0.2

[smtp]
processes = 1

[alerts]
interval = 0.3
mail_to = "ops@alerts.example"
'''


class Hooks(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    hooks = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    thread = threading.Thread(target=hooks.serve_forever, daemon=True)
    thread.start()
    with Sink() as sink:
        b = RunningNode(tmp_path_factory.mktemp("b"), relay=("127.0.0.1", sink.port),
                        config_text=CONFIG.format(name="b", policy=POLICY, script="main"),
                        ready_timeout=300)
        with b:
            a = RunningNode(tmp_path_factory.mktemp("a"), relay=("127.0.0.1", b.smtp_port),
                            config_text=CONFIG.format(name="a", policy="", script=""),
                            ready_timeout=300)
            with a:
                cluster = Cluster([_spec(a, "a"), _spec(b, "b")])
                try:
                    yield {"a": a, "b": b, "sink": sink, "cluster": cluster,
                           "za": _zeep(a), "zb": _zeep(b), "hooks": hooks}
                finally:
                    cluster.close()
    hooks.shutdown()
    hooks.server_close()


def _spec(node: RunningNode, name: str) -> NodeSpec:
    return NodeSpec(url=node.soap_url, username="admin", password=node.admin_password, name=name)


def _zeep(node: RunningNode) -> zeep.Client:
    session = requests.Session()
    session.auth = ("admin", node.admin_password)
    return zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=session))


def _send(node: RunningNode, rcpt: str, subject: str = "test") -> str:
    """One message; returns the msgid from the 250 reply."""
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("sender@client.example")
        smtp.rcpt(rcpt)
        code, reply = smtp.data(f"Subject: {subject}\r\n\r\nbody\r\n".encode())
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]


def _entry(client: zeep.Client, rcpt: str) -> Any:
    found = _items(client.service.mailQueue(filter=f"to={rcpt}", offset=0, limit=10)["result"])
    return found[0] if found else None


def _delivered_to(sink: Sink, rcpt: str) -> bool:
    return any(rcpt in m.rcpt_tos for m in sink.messages)


def test_suspension_holds_old_and_new_mail_until_it_expires(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    sink, b, zb, cluster = env["sink"], env["b"], env["zb"], env["cluster"]
    sink.handler.rcpt_replies["old@dst.example"] = "451 4.3.0 try again later"
    _send(b, "old@dst.example")
    old = wait_until(lambda: (e := _entry(zb, "old@dst.example")) is not None and e.msgretries >= 1 and e,
                     what="the old mail deferred once")
    del sink.handler.rcpt_replies["old@dst.example"]

    sid, result = cluster.suspend(filter="to~%@dst.example", ttl=15, reason="dst.example is down")
    assert not result.errors and set(result.values.values()) == {sid}
    new_msgid = _send(b, "new@dst.example")
    _send(b, "other@flow.example")
    wait_until(lambda: _delivered_to(sink, "other@flow.example"), what="other domains flowing")

    rows, _ = cluster.suspensions()
    row = next(r for r in rows if r.id == sid)
    code, shown = _ctl(env, capsys, "queue", "suspensions")
    assert code == 0 and [(r["id"], r["held"]) for r in shown if r["id"] == sid] == [(sid, 2)]
    assert (row.held, row.per_node, row.reason, row.author) == (2, {"a": 0, "b": 2},
                                                                 "dst.example is down", "admin")
    listed = _items(zb.service.mailQueueSuspendList())
    assert [(s.id, s.held, s.state) for s in listed if s.id == sid] == [(sid, 2, "active")]

    new = _entry(zb, "new@dst.example")
    explained = zb.service.mailQueueExplain(id=new.id)
    assert (explained.waitson, explained.suspension, explained.msgqueue) == ("suspension", sid, "ACTIVE")
    assert b"dst.example is down" in explained.summary
    # Held entries keep their state and count no retries.
    assert _entry(zb, "old@dst.example").msgretries == old.msgretries == 1
    assert not _delivered_to(sink, "old@dst.example") and not _delivered_to(sink, "new@dst.example")

    wait_until(lambda: _delivered_to(sink, "old@dst.example") and _delivered_to(sink, "new@dst.example"),
               what="expiry releasing both", timeout=40)
    kinds = wait_until(lambda: (k := [e.kind for e in _items(zb.service.mailTimeline(msgid=new_msgid))])
                       and "delivered" in k and k, what="the delivery recorded")
    assert kinds.index("suspended") < kinds.index("released") < kinds.index("delivered")
    assert [s.state for s in _items(zb.service.mailQueueSuspendList(ended=True)) if s.id == sid] == ["expired"]


def test_suspension_removed_releases_at_once_and_bad_input_faults(env: dict[str, Any]) -> None:
    sink, b, zb = env["sink"], env["b"], env["zb"]
    sid = zb.service.mailQueueSuspend(filter="to~%@rm.example", ttl=3600, reason="maintenance")
    _send(b, "x@rm.example")
    wait_until(lambda: any(s.held == 1 for s in _items(zb.service.mailQueueSuspendList()) if s.id == sid),
               what="the suspension holding the new entry")
    assert zb.service.mailQueueSuspendRemove(id=sid) == 1
    wait_until(lambda: _delivered_to(sink, "x@rm.example"), what="delivery after removal")
    for kwargs, text in (({"filter": "to~", "ttl": 60}, "invalid filter"),
                         ({"filter": "to~%@x.example", "ttl": 0}, "ttl"),
                         ({"filter": "", "ttl": 60}, "filter")):
        with pytest.raises(zeep.exceptions.Fault, match=text):
            zb.service.mailQueueSuspend(reason="", **kwargs)
    with pytest.raises(zeep.exceptions.Fault, match="no suspension"):
        zb.service.mailQueueSuspendRemove(id="nosuch")


def test_cluster_suspension_holds_on_every_node_and_one_removal_ends_it(env: dict[str, Any]) -> None:
    a, b, sink, cluster, za, zb = env["a"], env["b"], env["sink"], env["cluster"], env["za"], env["zb"]
    sid, result = cluster.suspend(filter="to~%@both.example", ttl=3600, reason="both down")
    assert not result.errors and result.values == {"a": sid, "b": sid}
    _send(a, "x@both.example")
    _send(b, "y@both.example")

    def merged() -> Any:
        rows = [r for r in cluster.suspensions()[0] if r.id == sid]
        return rows if rows and rows[0].per_node == {"a": 1, "b": 1} else None

    [row] = wait_until(merged, what="the one suspension holding one entry on each node")
    assert (row.held, row.reason, row.state) == (2, "both down", "active")
    for client, rcpt in ((za, "x@both.example"), (zb, "y@both.example")):
        assert client.service.mailQueueExplain(id=_entry(client, rcpt).id).waitson == "suspension"
    assert not _delivered_to(sink, "x@both.example") and not _delivered_to(sink, "y@both.example")

    released = cluster.unsuspend(sid)
    assert not released.errors and released.values == {"a": 1, "b": 1}
    wait_until(lambda: _delivered_to(sink, "x@both.example") and _delivered_to(sink, "y@both.example"),
               what="both nodes releasing their entry (a's through b)")
    for client in (za, zb):
        states = [s.state for s in _items(client.service.mailQueueSuspendList(ended=True)) if s.id == sid]
        assert states == ["removed"]
    assert not [r for r in cluster.suspensions()[0] if r.id == sid]


def _ctl(env: dict[str, Any], capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """appliancectl --json ARGV against both nodes; returns its exit code and parsed output."""
    from appliance_client import ctl

    config = Path(env["b"].data_dir).parent / "ctl.toml"
    config.write_text("".join(
        f'[[nodes]]\nname = "{n}"\nurl = "{env[n].soap_url}"\nusername = "admin"\n'
        f'password = "{env[n].admin_password}"\n' for n in ("a", "b")))
    capsys.readouterr()
    code = ctl.main(["--config", str(config), "--json", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_timeline_of_a_message_relayed_from_node_a_to_node_b(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    a, sink, cluster = env["a"], env["sink"], env["cluster"]
    msgid = _send(a, "far@relay.example", subject="relayed")
    wait_until(lambda: _delivered_to(sink, "far@relay.example"), what="A -> B -> sink")
    merged = wait_until(lambda: (m := cluster.timeline(msgid)[0]) and
                        [(e.node, e.event.kind) for e in m].count(("b", "delivered")) == 1 and m,
                        what="both nodes' events")
    steps = [(e.node, e.event.kind) for e in merged]
    for node in ("a", "b"):
        assert [k for n, k in steps if n == node] == ["received", "queued", "attempt", "delivered"]
    # A's attempt began before B received the message, and B queued it before A heard 250.
    assert steps.index(("a", "attempt")) < steps.index(("b", "received")) \
        < steps.index(("b", "queued")) < steps.index(("a", "delivered"))
    times = [e.time for e in merged]
    assert times == sorted(times)
    received_b = merged[steps.index(("b", "received"))].event
    detail = {p.first: p.second for p in _items(received_b.detail)}
    assert detail["relayed_from"] == msgid and detail["client"] == "127.0.0.1"
    assert detail["helo"] == "a.test" and received_b.msgid != msgid
    assert b"250" in merged[steps.index(("a", "delivered"))].event.summary
    # appliancectl prints the same, one row per event with its node.
    code, rows = _ctl(env, capsys, "trace", msgid)
    assert code == 0 and [(r["node"], r["kind"]) for r in rows] == steps


def test_explain_deferred_rate_limited_and_quarantined(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    sink, b, zb = env["sink"], env["b"], env["zb"]
    sink.handler.rcpt_replies["full@slow.example"] = "452 4.2.2 mailbox full"
    for rcpt in ("full@slow.example", "ratelim@any.example", "quar@any.example"):
        _send(b, rcpt)
    deferred = wait_until(lambda: (e := _entry(zb, "full@slow.example")) and e.msgretries >= 1 and e,
                          what="a deferral")
    x = zb.service.mailQueueExplain(id=deferred.id)
    assert (x.msgqueue, x.waitson, x.enhancedcode) == ("DEFER", "retry", "4.2.2")
    assert x.meaning == "persistent transient failure (may succeed if retried): mailbox full"
    assert x.lastreply.startswith(b"452 4.2.2 mailbox full") and x.retries == 1
    assert x.retriesleft > 100 and x.lifetime == 5 * 86400 and x.nextretry > x.age
    assert b"mailbox full" in x.summary and b"left before it bounces" in x.summary

    limited = wait_until(lambda: (e := _entry(zb, "ratelim@any.example")) and e.msgretries >= 1 and e,
                         what="a rate-limited deferral")
    x = zb.service.mailQueueExplain(id=limited.id)
    assert (x.waitson, x.ratelimit) == ("rate", "outbound:ratelim 1/3600s")
    assert b"rate limit outbound:ratelim" in x.summary

    held = wait_until(lambda: (e := _entry(zb, "quar@any.example")) and e.msgqueue == "HOLD" and e,
                      what="a quarantine")
    x = zb.service.mailQueueExplain(id=held.id)
    assert (x.msgqueue, x.waitson, x.quarantine) == ("HOLD", "quarantine", "review")

    with pytest.raises(zeep.exceptions.Fault, match="no queue entry"):
        zb.service.mailQueueExplain(id=999999)
    # The fan-out client asks every node; the one without that id says so.
    result = env["cluster"].explain(held.id)
    assert result.values["b"].waitson == "quarantine"
    kinds = [e.kind for e in _items(zb.service.mailTimeline(msgid=limited.msgid))]
    assert "policy" in kinds and "deferred" in kinds
    code, shown = _ctl(env, capsys, "--node", "b", "queue", "explain", str(held.id))
    assert code == 0 and shown["b"]["waitson"] == "quarantine"


def test_alert_fires_and_clears(env: dict[str, Any]) -> None:
    sink, b, zb, hooks = env["sink"], env["b"], env["zb"], env["hooks"]
    url = f"http://127.0.0.1:{hooks.server_address[1]}/hook"
    zb.service.mailQueueSuspend(filter="to~%@alert.example", ttl=3600, reason="keep it queued", id="alert-hold")
    result = env["cluster"].alert_add(name="backlog", filter="to~%@alert.example", threshold=1,
                                      minutes=0.01, webhook=url)
    assert set(result.values) == {"a", "b"}
    for i in range(2):
        _send(b, f"u{i}@alert.example")
    fired = wait_until(lambda: [h for h in Hooks.received if h["state"] == "firing"], what="the webhook")
    assert fired[0]["alert"] == "backlog" and fired[0]["count"] == 2 and fired[0]["node"] == "b"
    listed = {i.name: i for i in _items(zb.service.alertList())}
    assert listed["backlog"].state == "firing" and listed["backlog"].lastcount == 2
    log_text = lambda: "".join(p.read_text() for p in (b.data_dir / "log").glob("appliance.log*"))  # noqa: E731
    wait_until(lambda: "alert backlog of admin FIRING: 2 entries" in log_text(), what="the node-log line")
    wait_until(lambda: _delivered_to(sink, "ops@alerts.example"), what="the alert mail via B's queue")
    # Node A has the same alert, but nothing matches there.
    assert [i.state for i in _items(env["za"].service.alertList())] == ["ok"]

    zb.service.mailQueueSuspendRemove(id="alert-hold")
    cleared = wait_until(lambda: [h for h in Hooks.received if h["state"] == "ok"], what="clearing")
    assert cleared[0]["count"] <= 1
    assert {i.name: i.state for i in _items(zb.service.alertList())} == {"backlog": "ok"}
    env["cluster"].alert_delete(name="backlog")
    assert _items(zb.service.alertList()) == []
    with pytest.raises(zeep.exceptions.Fault, match="invalid filter"):
        zb.service.alertAdd(name="bad", filter="to~", threshold=1, minutes=0)
