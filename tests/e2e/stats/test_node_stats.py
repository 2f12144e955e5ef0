"""A real node: mail through SMTP to an aiosmtpd sink, then counters over statList and the RRD
from graphFile read back with rrdtool; rate() limits from a policy script across a restart and a crash,
hslRate/hslRateClear; statClear audited; a read-only user refused both clears."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import requests
import rrdtool
import zeep
from aiosmtpd.controller import Controller
from sqlalchemy import select

from appliance.db.engine import Store
from appliance.db.models import AuditRecord
from appliance.stats.rates import list_rates
from tests.support.node import RunningNode
from tests.support.postgres import free_port
from tests.support.wait import wait_until

CONFIG = """
[stats]
flush_interval = 0.2
graph_interval = 1.0
rrd_step = 1
"""


class _Collect:
    def __init__(self) -> None:
        self.rcpts: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.rcpts.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def sink() -> Iterator[tuple[Controller, _Collect]]:
    handler = _Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


def _client(node: RunningNode) -> zeep.Client:
    session = requests.Session()
    session.auth = ("admin", node.admin_password)
    return zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=session))


def _send(node: RunningNode, rcpts: list[str]) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "alice@sender.example", ", ".join(rcpts), "stats"
    msg.set_content("counted")
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as smtp:
        smtp.send_message(msg, to_addrs=rcpts)


def _delivered_in_rrd(raw: bytes, tmp_path: Path) -> float:
    path = tmp_path / "fetched.rrd"
    path.write_bytes(raw)
    now = int(time.time())
    (start, end, step), names, rows = rrdtool.fetch(str(path), "AVERAGE", "-r", "1", "-s", str(now - 600), "-e", str(now))
    i = names.index("deliver")
    return sum((row[i] or 0.0) * step for row in rows)  # a rate per second times the step


def test_counts_and_graphs_of_delivered_mail(tmp_path: Path, sink: tuple[Controller, _Collect]) -> None:
    controller, handler = sink
    with RunningNode(tmp_path, config_text=CONFIG, relay=("127.0.0.1", controller.port)) as node:
        _send(node, ["a@dest.example", "b@dest.example"])
        _send(node, ["c@other.example"])
        wait_until(lambda: len(handler.rcpts) == 3, what="delivery to the sink")
        client = _client(node)

        def counters() -> dict[tuple[str, str], int] | None:
            items = client.service.statList("mail:action:deliver", "", "", 0, 100) or []
            got = {(i.key2, i.key3): i.count for i in items}
            return got if sum(got.values()) == 3 else None

        got = wait_until(counters, what="the delivery counters")
        assert got == {("inbound", "dest.example"): 2, ("inbound", "other.example"): 1}
        [item] = client.service.statList("mail:action:%", "inbound", "dest.example", 0, 10)
        assert item.key1 == "mail:action:deliver" and abs(item.created - time.time()) < 120

        name = "mail-stat-inbound-dest.example"
        wait_until(lambda: name in (client.service.graphList() or []), what="the mail-stat graph")
        assert {"queue", "delivery", "cpu", "load", "smtp-connections"} <= set(client.service.graphList())
        total = wait_until(lambda: _delivered_in_rrd(client.service.graphFile(name), tmp_path) or None,
                      what="deliveries in the RRD")
        assert total == pytest.approx(2.0, abs=0.01)
        with pytest.raises(zeep.exceptions.Fault, match="no graph"):
            client.service.graphFile("../appliance.db")

        assert client.service.statClear("mail:action:deliver", "", "other.example") == 1
        assert [(i.key3) for i in client.service.statList("mail:action:deliver", "", "", 0, 100)] == ["dest.example"]
        store = Store(f"sqlite:///{node.data_dir / 'appliance.db'}")
        try:
            with store.transaction(read_only=True) as s:
                ops = [a.operation for a in s.scalars(select(AuditRecord))]
            assert "statClear" in ops
        finally:
            store.dispose()


RATE_CONFIG = CONFIG + """
[scripts]
limit = \"\"\"function rcpt_to(s, r)
  if rate("outbound", r:match("^([^@]*)@"), 2, 3600) then return accept() end
  return defer(451, "4.7.1 over the limit")
end\"\"\"

[[listeners]]
id = "inbound"
port = 2525
script = "limit"
"""


def _rcpt(node: RunningNode, local: str) -> int:
    """One RCPT through the node's policy (which calls rate() in the node process)."""
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail("sender@example.org")
        code, _ = smtp.rcpt(f"{local}@dest.example")
        smtp.rset()
    return code


def _windows(client: zeep.Client) -> dict[str, int]:
    return {row.entry: row.count for row in client.service.hslRate("outbound", "%", 0, 10) or []}


def _stored(node: RunningNode) -> dict[str, int]:
    """The rate windows as the store holds them (what survives a crash)."""
    store = Store(f"sqlite:///{node.data_dir / 'appliance.db'}")
    try:
        with store.transaction(read_only=True) as s:
            return {r.entry: r.count for r in list_rates(s, "outbound", "%", offset=0, limit=10)}
    finally:
        store.dispose()


def test_rate_limits_in_smtp_hold_across_restarts_and_a_crash(tmp_path: Path) -> None:
    with RunningNode(tmp_path, config_text=RATE_CONFIG) as node:
        assert [_rcpt(node, "alice") for _ in range(3)] == [250, 250, 451]
        assert _rcpt(node, "bob") == 250
        client = _client(node)
        # hslRate reads the node's live windows: no flush needed to see them.
        assert _windows(client) == {"alice": 2, "bob": 1}
        [row] = client.service.hslRate("outbound", "alice", 0, 10)
        assert row.interval == 3600 and abs(row.expires - (time.time() + 3600)) < 120

        node.stop()  # a clean stop writes every counted hit
        node.start()
        assert _rcpt(node, "alice") == 451 and _rcpt(node, "bob") == 250 and _rcpt(node, "bob") == 451

        assert [_rcpt(node, "carol") for _ in range(2)] == [250, 250]
        client = _client(node)
        assert _windows(client).get("carol") == 2
        wait_until(lambda: _stored(node).get("carol") == 2, what="carol's hits flushed to the store")
        node.kill()  # a crash after the flush loses nothing that was flushed
        node.start()
        assert _rcpt(node, "carol") == 451

        client = _client(node)
        assert client.service.hslRateClear("outbound", "alice") == 1
        assert "alice" not in _windows(client)
        assert _rcpt(node, "alice") == 250  # the node's memory was cleared too
        assert _rcpt(node, "carol") == 451


def test_readonly_user_cannot_clear_counters_or_rates(tmp_path: Path) -> None:
    with RunningNode(tmp_path, config_text=RATE_CONFIG) as node:
        assert [_rcpt(node, "alice") for _ in range(3)] == [250, 250, 451]
        admin = _client(node)
        admin.service.userAdd("viewer", "viewer-pw", "readonly", None, None, None)
        session = requests.Session()
        session.auth = ("viewer", "viewer-pw")
        viewer = zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=session))
        wait_until(lambda: _windows(viewer) == {"alice": 2}, what="the window, read by the viewer")
        with pytest.raises(zeep.exceptions.Fault, match="access denied"):
            viewer.service.hslRateClear("outbound", "alice")
        with pytest.raises(zeep.exceptions.Fault, match="access denied"):
            viewer.service.statClear("%", "", "")
        assert _windows(admin) == {"alice": 2} and _rcpt(node, "alice") == 451
        store = Store(f"sqlite:///{node.data_dir / 'appliance.db'}")
        try:
            with store.transaction(read_only=True) as s:
                refused = [a.operation for a in s.scalars(select(AuditRecord))
                           if a.username == "viewer" and a.outcome.startswith("fault: access denied")]
            assert sorted(refused) == ["hslRateClear", "statClear"]
        finally:
            store.dispose()
