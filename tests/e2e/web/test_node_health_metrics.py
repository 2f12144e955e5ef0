"""/healthz, /readyz and /metrics of a live node of processes, beside its SOAP API."""

from __future__ import annotations

import os
import signal
import smtplib
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.node import RunningNode
from tests.support.postgres import PostgresServer, free_port
from tests.support.wait import wait_until

CONFIG = """
[queue]
retry_schedule = [3600]
"""


def _base(node: RunningNode) -> str:
    return node.soap_url.removesuffix("/remote/")


def _send(node: RunningNode, count: int) -> None:
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as client:
        for i in range(count):
            client.sendmail("a@example.org", [f"r{i}@one.example", "s@two.example"],
                            f"Subject: m{i}\r\n\r\nbody\r\n".encode())


def _families(node: RunningNode) -> dict[str, object]:
    resp = requests.get(_base(node) + "/metrics", auth=("admin", node.admin_password), timeout=10)
    assert resp.status_code == 200, resp.text
    return {f.name: f for f in text_string_to_metric_families(resp.text)}


def _queue_total(node: RunningNode) -> float:
    family = _families(node)["appliance_queue_entries"]
    return sum(s.value for s in family.samples)  # type: ignore[attr-defined]


def _count(node: RunningNode) -> int:
    from zeep import Client
    from zeep.transports import Transport

    session = requests.Session()
    session.auth = ("admin", node.admin_password)
    client = Client(node.soap_url + "?wsdl", transport=Transport(session=session))
    return int(client.service.mailQueueCount(filter=""))


def test_metrics_match_the_queue_and_health_answers(tmp_path: Path) -> None:
    node = RunningNode(tmp_path, config_text=CONFIG, relay=("127.0.0.1", free_port()))
    with node:
        assert requests.get(_base(node) + "/metrics", timeout=10).status_code == 401
        _send(node, 3)
        wait_until(lambda: _count(node) == 6, what="6 entries queued")
        wait_until(lambda: _queue_total(node) == _count(node), what="metrics equal the count")
        families = _families(node)
        domains = {s.labels["domain"]: s.value  # type: ignore[attr-defined]
                   for s in families["appliance_queue_domain_entries"].samples}  # type: ignore[attr-defined]
        assert domains == {"one.example": 3, "two.example": 3}
        live = requests.get(_base(node) + "/healthz", timeout=10)
        assert live.status_code == 200 and "ok process delivery: running" in live.text
        ready = requests.get(_base(node) + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert "ok listener inbound: bound" in ready.text and "ok store: reachable" in ready.text

        with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as client:
            client.ehlo("probe")
            client.mail("a@example.org")
            assert client.rcpt("r@[127.0.0.1]")[0] == 550  # address literals are refused
        families = _families(node)

        def total(name: str, sample: str, **labels: str) -> float:
            return sum(s.value for s in families[name].samples  # type: ignore[attr-defined]
                       if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))

        assert total("appliance_smtp_sessions", "appliance_smtp_sessions_total",
                     listener="inbound") >= 2
        assert total("appliance_smtp_rejects", "appliance_smtp_rejects_total",
                     reason="550 5.7.1") == 1
        assert total("appliance_intake_batch_messages", "appliance_intake_batch_messages_sum") == 3
        assert total("appliance_spool_fsync_seconds", "appliance_spool_fsync_seconds_count") == 3

        os.kill(node.children()["appliance delivery"], signal.SIGKILL)
        wait_until(lambda: total_restarts(node) == 1, what="the restart counted")


def total_restarts(node: RunningNode) -> float:
    family = _families(node).get("appliance_process_restarts")  # absent until a first restart
    return sum(s.value for s in getattr(family, "samples", ())
               if s.name == "appliance_process_restarts_total" and s.labels["role"] == "delivery")


@pytest.mark.postgres
def test_readyz_follows_the_store_away_and_back(tmp_path: Path) -> None:
    server = PostgresServer().start()  # its own server: this test stops and restarts it
    try:
        url = server.create_database("ready")
        node = RunningNode(tmp_path, database_url=url, config_text=CONFIG,
                           relay=("127.0.0.1", free_port()))
        with node:
            ready = _base(node) + "/readyz"
            wait_until(lambda: requests.get(ready, timeout=10).status_code == 200, what="ready")
            server.pause()
            try:
                wait_until(lambda: requests.get(ready, timeout=10).status_code == 503,
                           what="unready without the store")
                assert "FAIL store: unreachable" in requests.get(ready, timeout=10).text
                assert requests.get(_base(node) + "/healthz", timeout=10).status_code == 200
            finally:
                server.resume()
            wait_until(lambda: requests.get(ready, timeout=10).status_code == 200,
                       what="ready again", timeout=60)
    finally:
        server.stop()
