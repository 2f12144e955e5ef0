"""halonadm 1.0.0 (PyPI, unchanged) against a real HTTPS node using the node's own certificate:
`qshape`, `mailq -v` and `view` over deferred mail; and the flows' scripts as config keys
(`configKeys` / `configKeySet(key, params)`) round-tripped with suds and PHP's SoapClient."""

from __future__ import annotations

import json
import os
import re
import shutil
import smtplib
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from suds.cache import NoCache
from suds.client import Client as SudsClient

from tests.e2e.soap.conftest import PHP_CLIENT
from tests.support.node import RunningNode

GATE = "function connect(s) return accept() end"
RELAYED = 'function rcpt_to(s, r)\n  return accept()\nend'
CONFIG = f'''
[[listeners]]
id = "inbound"
port = 2525  # the --smtp-listen flag of the test node wins

[scripts]
gate = "{GATE}"
relayed = """{RELAYED}"""
'''
HALONADM = ("import sys; from halonadm.halonadm import main; sys.argv[0] = 'halonadm'; main()")


class HttpsNode:
    def __init__(self, node: RunningNode, tmp: Path) -> None:
        self.node = node
        self.host = f"127.0.0.1:{node.soap_port}"
        self.url = f"https://{self.host}/remote/"
        self.cert = node.data_dir / "tls" / "node.crt"
        self.tmp = tmp

    def suds(self) -> SudsClient:
        return SudsClient(self.url + "?wsdl", username="admin", password=self.node.admin_password,
                          cache=NoCache(), timeout=30)

    def halonadm(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The installed halonadm, configured as its README says, trusting the node's certificate."""
        (self.tmp / "halonadm.conf").write_text(
            f"[DEFAULT]\nusername=admin\npassword={self.node.admin_password}\n\n"
            f'[smtpfilter]\nservers=["{self.host}"]\n')
        env = dict(os.environ, SSL_CERT_FILE=str(self.cert), HOME=str(self.tmp), TERM="dumb")
        return subprocess.run([sys.executable, "-c", HALONADM, *args], cwd=self.tmp, env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    def php(self, calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        done = subprocess.run(
            ["php", str(PHP_CLIENT), self.url + "?wsdl", "admin", self.node.admin_password, "0"],
            input=json.dumps(calls), capture_output=True, text=True, timeout=120, check=False,
            env=dict(os.environ, PHP_SOAP_CAFILE=str(self.cert)))
        assert done.returncode == 0, done.stderr + done.stdout
        result: list[dict[str, Any]] = json.loads(done.stdout)
        return result


@pytest.fixture(scope="module")
def https_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsNode]:
    tmp = tmp_path_factory.mktemp("halonadm")
    # Delivery to a closed port on loopback: every message is deferred and stays queued.
    node = RunningNode(tmp, config_text=CONFIG, relay=("127.0.0.1", 1))
    node.extra_args = ["--soap-listen", f"https://127.0.0.1:{node.soap_port}"]
    with node:
        yield HttpsNode(node, tmp)


@pytest.fixture
def trust_node(https_node: HttpsNode, monkeypatch: pytest.MonkeyPatch) -> HttpsNode:
    """suds in this process verifies the node's certificate, as halonadm's does."""
    monkeypatch.setenv("SSL_CERT_FILE", str(https_node.cert))
    return https_node


def test_halonadm_qshape_mailq_and_view(trust_node: HttpsNode) -> None:
    node = trust_node
    with smtplib.SMTP("127.0.0.1", node.node.smtp_port, timeout=30) as smtp:
        for rcpt in ("ann@dest.example", "bob@dest.example", "cat@other.example"):
            smtp.sendmail("sender@source.example", [rcpt],
                          f"Subject: for {rcpt}\r\nFrom: sender@source.example\r\n\r\n"
                          f"body for {rcpt}\r\n")
    client = node.suds()
    deadline = time.monotonic() + 60
    while client.service.mailQueueCount("queue=DEFER and retry>=1") < 3:
        assert time.monotonic() < deadline, "the messages were not deferred"
        time.sleep(0.2)
    items = {i.msgto: i for i in client.service.mailQueue("", 0, 10, None).result.item}
    with sqlite3.connect(node.node.data_dir / "appliance.db", timeout=30) as db:
        db.execute("UPDATE queue SET score = 4.5 WHERE id = ?", (items["ann@dest.example"].id,))

    qshape = node.halonadm("qshape", node.host)
    assert qshape.returncode == 0, qshape.stdout + qshape.stderr
    rows = {line.split()[0]: line.split()[1:] for line in qshape.stdout.splitlines() if line.strip()}
    assert rows["domain"][:2] == ["TOTAL", "3"]
    assert rows["dest.example"][:2] == ["2", "2"] and rows["other.example"][:2] == ["1", "1"]

    mailq = node.halonadm("-v", "mailq", node.host)  # (`mailq -v HOST` trips its argparse)
    assert mailq.returncode == 0, mailq.stdout + mailq.stderr
    for item in items.values():
        assert item.msgid in mailq.stdout
    assert "score: SA=4.5" in mailq.stdout and "subject: for cat@other.example" in mailq.stdout
    assert re.search(r"error: .*(refused|127\.0\.0\.1)", mailq.stdout), mailq.stdout
    assert "-- \x1b[1m3\x1b[0m/\x1b[1m3\x1b[0m Requests." in mailq.stdout

    view = node.halonadm("view", items["bob@dest.example"].msgpath, node.host)
    # halonadm exits 1 after printing, whatever happened: the message is the proof.
    assert "Subject: for bob@dest.example" in view.stdout and "body for bob@dest.example" in view.stdout
    assert "Error" not in view.stdout, view.stdout + view.stderr


def flow_items(result: Any) -> dict[str, Any]:
    return {i.name: i for i in result.item if re.match(r"\w+_flow__\d+", i.name)}


def test_flow_scripts_round_trip_as_config_keys(trust_node: HttpsNode) -> None:
    node = trust_node
    client = node.suds()
    keys = client.service.configKeys()
    flows = flow_items(keys)
    # halonctl's `hsl dump`: name, params.item[0] (the script) and params.item[-1] (its text)
    assert {n: (f.params.item[0], f.params.item[-1]) for n, f in flows.items()} == {
        "script_flow__1": ("gate", GATE), "script_flow__2": ("relayed", RELAYED)}
    by_key = {i.key: i for i in keys.item}
    port = by_key["listeners.inbound.port"]
    assert (port.value, port.effective, port.source) == ("2525", str(node.node.smtp_port), "flag")
    assert (by_key["scripts.gate"].source, by_key["queue.workers"].source) == ("revision", "default")
    assert by_key["api.wsdl_requires_auth"].effective == "false"

    edited = RELAYED.replace("accept()", 'accept() -- pushed from git')
    revision = client.service.configKeySet(key="script_flow__2",
                                           params={"item": ["relayed", edited]})
    assert revision >= 2
    assert client.service.configKeyGet("scripts.relayed") == edited
    assert flow_items(client.service.configKeys())["script_flow__2"].params.item[-1] == edited
    deadline = time.monotonic() + 30  # the node applies the new revision by itself
    while by_key_of(client)["scripts.relayed"].effective != edited:
        assert time.monotonic() < deadline, "the new revision was not applied"
        time.sleep(0.2)
    with pytest.raises(Exception, match="script_flow__2 is script 'relayed', not 'gate'"):
        client.service.configKeySet(key="script_flow__2", params={"item": ["gate", "x"]})
    with pytest.raises(Exception, match="invalid configuration|script"):
        client.service.configKeySet(key="script_flow__3", params={"item": ["bad id!", "x"]})
    assert client.service.configKeyGet("scripts.relayed") == edited  # nothing half-changed

    if shutil.which("php"):
        listed, pushed, again = node.php([
            ("configKeys", {}),
            ("configKeySet", {"key": "script_flow__2", "params": {"item": ["relayed", RELAYED]}}),
            ("configKeys", {}),
        ])
        php_flows = {i["name"]: i["params"]["item"] for i in listed["ok"]["result"]["item"]
                     if i["name"].startswith("script_flow__")}
        assert php_flows["script_flow__2"] == ["relayed", edited]
        assert pushed["ok"]["result"] > revision
        assert {i["name"]: i["params"]["item"] for i in again["ok"]["result"]["item"]
                if i["name"].startswith("script_flow__")}["script_flow__2"] == ["relayed", RELAYED]


def by_key_of(client: SudsClient) -> dict[str, Any]:
    return {i.key: i for i in client.service.configKeys().item}


def test_the_config_switch_requires_credentials_for_the_wsdl(trust_node: HttpsNode) -> None:
    import requests

    node = trust_node
    client = node.suds()  # loads the WSDL anonymously

    def anonymous() -> int:
        return requests.get(node.url + "?wsdl", verify=str(node.cert), timeout=10).status_code

    assert anonymous() == 200
    client.service.configKeySet(key="api.wsdl_requires_auth", value="true")
    deadline = time.monotonic() + 30  # applied by the node without a restart
    while anonymous() != 401:
        assert time.monotonic() < deadline, "the switch was not applied"
        time.sleep(0.2)
    assert requests.get(node.url + "?wsdl", verify=str(node.cert), timeout=10,
                        auth=("admin", node.node.admin_password)).status_code == 200
    client.service.configKeySet(key="api.wsdl_requires_auth", value="false")
    while anonymous() != 200:
        assert time.monotonic() < deadline + 30, "the switch was not applied"
        time.sleep(0.2)
