"""A real node: config committed over SOAP takes effect without a restart."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest
from zeep.exceptions import Fault

from tests.e2e.config.support import send_mail, soap, wait_until
from tests.support.node import RunningNode
from tests.support.postgres import free_port


@pytest.fixture
def node(tmp_path: Path):  # type: ignore[no-untyped-def]
    with RunningNode(tmp_path) as running:
        yield running


def test_listener_added_by_config_is_reached_without_restart(node: RunningNode) -> None:
    api = soap(node)
    pid = node.proc.pid if node.proc else None
    text = api.configTextGet()
    port = free_port()
    new = text + f'\n# added over SOAP\n[[listeners]]\nid = "extra"\nport = {port}\n'
    revision = api.configTextSet(text=new, comment="extra listener")
    assert revision == 2
    wait_until(lambda: _accepts(port), what=f"listener on {port}")
    send_mail(port, subject="via extra")
    assert node.proc is not None and node.proc.pid == pid and node.proc.poll() is None
    history = wait_until(lambda: api.mailQueue(filter="server=extra", offset=0, limit=10)
                         or api.mailHistory(filter="server=extra", offset=0, limit=10),
                         what="the message from the extra listener")
    assert history

    removed = api.configRevisionRevert(id=1, comment="drop it")
    assert removed == 3 and api.configTextGet(revision=3) == text
    wait_until(lambda: not _accepts(port), what="listener closed")
    send_mail(node.smtp_port, subject="first listener still up")


def test_invalid_text_is_a_fault_and_changes_nothing(node: RunningNode) -> None:
    api = soap(node)
    before = api.configRevisionLog(offset=0, limit=10)
    with pytest.raises(Fault) as info:
        api.configTextSet(text="[queue]\nworkers = 0\n", comment="bad")
    assert "line 2, column 1" in info.value.message and "queue.workers" in info.value.message
    problems = api.configTest(text="[queue]\nworkers = 0\n")
    assert [(p.line, p.column) for p in problems] == [(2, 1)]
    assert api.configTest(text=api.configTextGet()) in (None, [])
    assert len(api.configRevisionLog(offset=0, limit=10)) == len(before)


def test_keys_and_cli_share_the_revisions(node: RunningNode) -> None:
    api = soap(node)
    assert api.configKeySet(key="queue.workers", value="6", comment="more") == 2
    assert api.configKeyGet(key="queue.workers") == "6"
    keys = {item.key: item.value for item in api.configKeys()}
    assert keys["queue.workers"] == "6" and "listeners.inbound.port" in keys
    diff = api.configRevisionDiff(**{"from": 1, "to": 2})
    assert "-workers = 4" in diff and "+workers = 6" in diff
    log = api.configRevisionLog(offset=0, limit=1)
    assert (log[0].id, log[0].author, log[0].comment) == (2, "admin", "more")
    shown = node.cli("config", "log")
    assert shown.returncode == 0, shown.stderr
    assert "more" in shown.stdout and "admin" in shown.stdout


def _accepts(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            return client.noop()[0] == 250
    except OSError:
        return False


def test_changes_are_audited_and_access_checked(node: RunningNode) -> None:
    import sqlite3

    import requests
    from zeep import Client
    from zeep.transports import Transport

    added = node.cli("user", "add", "viewer", "--role", "readonly", "--password-stdin",
                     input_text="viewer-pass\n")
    assert added.returncode == 0, added.stderr
    session = requests.Session()
    session.auth = ("viewer", "viewer-pass")
    viewer = Client(node.soap_url + "?wsdl", transport=Transport(session=session)).service
    assert "[queue]" in viewer.configTextGet()
    with pytest.raises(Fault):
        viewer.configKeySet(key="queue.workers", value="3", comment="not allowed")
    soap(node).configKeySet(key="queue.workers", value="3", comment="allowed")
    with sqlite3.connect(node.data_dir / "appliance.db") as db:
        rows = db.execute("SELECT username, operation, outcome FROM audit "
                          "WHERE operation = 'configKeySet' ORDER BY id").fetchall()
    assert rows[0][:2] == ("viewer", "configKeySet") and rows[0][2].startswith("fault")
    assert rows[-1] == ("admin", "configKeySet", "ok")
    assert soap(node).configKeyGet(key="queue.workers") == "3"
