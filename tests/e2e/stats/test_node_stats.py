"""A real node: mail through SMTP to an aiosmtpd sink, then counters over statList and the RRD
from graphFile read back with rrdtool; rate windows over hslRate/hslRateClear; statClear audited."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import rrdtool
import zeep
from aiosmtpd.controller import Controller
from sqlalchemy import select

from appliance.db.engine import Store
from appliance.db.models import AuditRecord
from appliance.stats.rates import Rates
from tests.support.node import RunningNode
from tests.support.postgres import free_port

T = TypeVar("T")
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


def until(check: Callable[[], T | None], *, timeout: float = 30.0, what: str = "") -> T:
    """Poll an outcome (not readiness) until it holds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


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
        until(lambda: len(handler.rcpts) == 3, what="delivery to the sink")
        client = _client(node)

        def counters() -> dict[tuple[str, str], int] | None:
            items = client.service.statList("mail:action:deliver", "", "", 0, 100) or []
            got = {(i.key2, i.key3): i.count for i in items}
            return got if sum(got.values()) == 3 else None

        got = until(counters, what="the delivery counters")
        assert got == {("inbound", "dest.example"): 2, ("inbound", "other.example"): 1}
        [item] = client.service.statList("mail:action:%", "inbound", "dest.example", 0, 10)
        assert item.key1 == "mail:action:deliver" and abs(item.created - time.time()) < 120

        name = "mail-stat-inbound-dest.example"
        until(lambda: name in (client.service.graphList() or []), what="the mail-stat graph")
        assert {"queue", "delivery", "cpu", "load", "smtp-connections"} <= set(client.service.graphList())
        total = until(lambda: _delivered_in_rrd(client.service.graphFile(name), tmp_path) or None,
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


def test_rate_windows_over_soap_and_across_a_restart(tmp_path: Path) -> None:
    with RunningNode(tmp_path, config_text=CONFIG) as node:
        # The node's store is shared by every process of the node: count hits from here.
        store = Store(f"sqlite:///{node.data_dir / 'appliance.db'}")
        try:
            rates = Rates(store)
            assert [rates.rate("outbound", "alice", 2, 3600) for _ in range(3)] == [True, True, False]
            client = _client(node)
            [row] = client.service.hslRate("outbound", "%", 0, 10)
            assert (row.entry, row.count, row.interval) == ("alice", 2, 3600)
            node.stop()
            node.start()
            client = _client(node)
            assert not Rates(store).rate("outbound", "alice", 2, 3600)  # still limited after restart
            assert client.service.hslRateClear("outbound", "alice") == 1
            assert (client.service.hslRate("outbound", "", 0, 10) or []) == []
            assert Rates(store).rate("outbound", "alice", 2, 3600)
        finally:
            store.dispose()
