"""A live node and a custom user restricted to one domain: the node-wide figures it may call
(systemStatus, queuestat, scriptTest's queue_metric) count its own entries only, and the
statistics and graphs of every domain are refused to it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import zeep
from zeep.exceptions import Fault

from appliance.db.engine import Store
from appliance.queue import store as queue_store
from appliance.queue.spool import Spool
from appliance.types import Envelope, NewMessage, QueueState
from tests.e2e.commands.conftest import poll_to_end
from tests.support.node import RunningNode

TENANT = ("tenant", "tenant-pw")
RESTRICTION = "to~%@tenant.example"
OPERATIONS = ["systemStatus", "scriptTest", "commandRun", "commandPoll", "graphList",
              "graphFile", "statList", "statClear", "hslRate", "hslRateClear"]
METRIC = """
function rcpt_to(s, rcpt)
  echo("mine=" .. queue_metric("domain", "tenant.example"))
  echo("other=" .. queue_metric("domain", "other.example"))
  echo("held=" .. queue_metric("state", "HOLD"))
  return accept()
end
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    with RunningNode(tmp_path_factory.mktemp("restricted")) as running:
        admin = _client(running, "admin", running.admin_password)
        admin.service.userAdd(username=TENANT[0], password=TENANT[1], role="custom",
                              operations={"item": OPERATIONS}, restriction=RESTRICTION,
                              commands={"item": ["queuestat", "queuestat *", "statd *"]})
        store = Store(f"sqlite:///{running.data_dir / 'appliance.db'}")
        try:
            spool = Spool(running.data_dir / "spool")
            # Held entries straight into the store (nothing delivers them): 2 mine, 3 others.
            _queue(store, spool, ("a@tenant.example", "b@tenant.example"), transport="default")
            _queue(store, spool, ("x@other.example", "y@other.example", "z@other.example"),
                   transport="default")
        finally:
            store.dispose()
        yield running


def _client(node: RunningNode, user: str, password: str) -> zeep.Client:
    session = requests.Session()
    session.auth = (user, password)
    return zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=session, timeout=30))


def _queue(store: Store, spool: Spool, rcpts: tuple[str, ...], *, transport: str) -> None:
    msgid = str(uuid.uuid4())
    data = f"Subject: s\r\n\r\nbody {msgid}\r\n".encode()
    msg = NewMessage(msgid=msgid, envelope=Envelope(sender="s@sender.example", recipients=rcpts,
                     listener="inbound", client_ip="192.0.2.7", helo="client.example"),
                     path=spool.write(msgid, data), size=len(data), subject="s",
                     received=time.time(), transport=transport, state=QueueState.HOLD, metadata={})
    with store.transaction() as session:
        queue_store.enqueue(session, msg, now=time.time())


def _queue_counts(client: zeep.Client) -> dict[str, int]:
    return {c.state: c.count for c in client.service.systemStatus().queue.item}


def test_system_status_counts_only_the_users_entries(node: RunningNode) -> None:
    assert _queue_counts(_client(node, "admin", node.admin_password))["HOLD"] == 5
    tenant = _queue_counts(_client(node, *TENANT))
    assert tenant["HOLD"] == 2 and sum(tenant.values()) == 2


def test_queuestat_counts_only_the_users_entries(node: RunningNode) -> None:
    def queuestat(client: zeep.Client, *words: str) -> str:
        cid = client.service.commandRun({"item": [w.encode() for w in ("queuestat", *words)]}, 80, 24)
        return poll_to_end(client, cid)[0].decode()

    admin, tenant = _client(node, "admin", node.admin_password), _client(node, *TENANT)
    assert queuestat(admin).splitlines()[-1].split() == ["total", "0", "0", "5", "5"]
    assert queuestat(tenant).splitlines()[-1].split() == ["total", "0", "0", "2", "2"]
    # The user's own --restriction only narrows further; it cannot widen.
    mine = queuestat(tenant, "--restriction", "to~%@other.example or to=a@tenant.example")
    assert mine.splitlines()[-1].split() == ["total", "0", "0", "1", "1"]
    with pytest.raises(Fault, match="statd shows node-wide figures"):
        tenant.service.commandRun({"item": [b"statd", b"-g", b"queue"]}, 80, 24)


def test_script_test_queue_metric_counts_only_the_users_entries(node: RunningNode) -> None:
    def metrics(client: zeep.Client) -> list[str]:
        items = client.service.scriptTest(flow="rcpt_to", script=METRIC, message=b"", envelope={
            "sender": "s@x.example", "recipients": {"item": ["r@tenant.example"]}})
        return [i.text.decode() for i in items if i.kind == "output"]

    assert metrics(_client(node, "admin", node.admin_password)) == ["mine=2", "other=3", "held=5"]
    assert metrics(_client(node, *TENANT)) == ["mine=2", "other=0", "held=2"]


def test_statistics_and_graphs_are_refused_to_a_restricted_user(node: RunningNode) -> None:
    admin, tenant = _client(node, "admin", node.admin_password), _client(node, *TENANT)
    admin.service.graphList()  # allowed, whatever graphs exist yet
    for call in (lambda: tenant.service.graphList(), lambda: tenant.service.graphFile(name="queue"),
                 lambda: tenant.service.statList(key1="", key2="", key3="", offset=0, limit=10),
                 lambda: tenant.service.hslRate(ns="", entry="", offset=0, limit=10),
                 lambda: tenant.service.statClear(key1="", key2="", key3=""),
                 lambda: tenant.service.hslRateClear(ns="x", entry="")):
        with pytest.raises(Fault, match="node-wide figures"):
            call()
