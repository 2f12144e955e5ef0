"""Three real nodes sharing config through one real PostgreSQL: join, apply, override, outage."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from zeep.exceptions import Fault

from tests.e2e.config.support import send_mail, soap, wait_until
from tests.support.node import RunningNode
from tests.support.postgres import PostgresServer, free_port

pytestmark = pytest.mark.postgres


class Sink:
    """The next hop every node relays to: records the subjects it receives."""

    def __init__(self) -> None:
        self.subjects: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for line in envelope.content.decode(errors="replace").splitlines():
            if line.startswith("Subject: "):
                with self.lock:
                    self.subjects.append(line.removeprefix("Subject: "))
        return "250 OK"


@pytest.fixture
def shared_pg() -> Iterator[PostgresServer]:
    server = PostgresServer().start()  # its own server: this test stops and restarts it
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def _by_serial(api: Any) -> dict[str, Any]:
    return {n.serial: n for n in (api.clusterNodeList() or [])}


def _all_run(api: Any, revision: int, count: int = 3) -> bool:
    nodes = _by_serial(api)
    return len(nodes) == count and all(
        n.configrevision == revision and n.status == "up" for n in nodes.values())


def test_cluster_of_three(tmp_path: Path, shared_pg: PostgresServer,
                          sink: tuple[Sink, int]) -> None:
    received, relay_port = sink
    dsn = shared_pg.url(shared_pg_db := "cluster")
    shared_pg.create_database(shared_pg_db)
    with contextlib.ExitStack() as stack:
        a, b, c = (stack.enter_context(RunningNode(tmp_path / name, relay=("127.0.0.1", relay_port)))
                   for name in "abc")
        api_a, api_b, api_c = soap(a), soap(b), soap(c)

        # A cluster of two: A creates it (CLI, on the running node's store), B joins over SOAP.
        created = a.cli("cluster", "create", "--dsn", dsn)
        assert created.returncode == 0, created.stderr
        assert api_b.clusterJoin(dsn=dsn) == 1
        wait_until(lambda: _all_run(api_a, 1, count=2), what="two nodes at revision 1")
        # A third: A asks C to join.
        serial_c = api_a.clusterNodeAdd(url=c.soap_url, username="admin", password=c.admin_password)
        assert serial_c == api_c.getSerial()
        wait_until(lambda: _all_run(api_a, 1), what="three nodes at revision 1")

        # Commit on one, all three apply it.
        r2 = api_b.configKeySet(key="queue.workers", value="7", comment="seven")
        assert r2 == 2
        wait_until(lambda: _all_run(api_c, r2), what="all at revision 2")
        assert api_a.configKeyGet(key="queue.workers") == "7"

        # A node-local override: only C's name changes.
        api_c.configKeySet(key="local:node.name", value="edge-c", comment="")
        names = wait_until(lambda: (lambda n: n if n[serial_c].name == "edge-c" else None)(
            _by_serial(api_a)), what="C's override applied")
        assert {n.name for s, n in names.items() if s != serial_c} == {"node1"}
        assert api_a.configKeyGet(key="node.name") == "node1"

        # An invalid text is refused on every node and changes nothing.
        for api in (api_a, api_b, api_c):
            with pytest.raises(Fault) as info:
                api.configTextSet(text="[queue]\nworkers = 0\n", comment="bad")
            assert "line 2, column 1" in info.value.message
        assert api_a.configRevisionLog(offset=0, limit=1)[0].id == r2

        # A listener added by config: A binds it; B and C cannot (same port on this host),
        # keep revision 2 running and say why, until their node-local port overrides arrive.
        ports = {"a": free_port(), "b": free_port(), "c": free_port()}
        text = api_a.configTextGet()
        r3 = api_a.configTextSet(
            text=text + f'\n[[listeners]]\nid = "extra"\nport = {ports["a"]}\n', comment="extra")
        wait_until(lambda: _by_serial(api_a)[serial_c].problem, what="C reports the clash")
        assert _by_serial(api_a)[serial_c].configrevision == r2
        api_b.configKeySet(key="local:listeners.extra.port", value=str(ports["b"]), comment="")
        api_c.configKeySet(key="local:listeners.extra.port", value=str(ports["c"]), comment="")
        wait_until(lambda: _all_run(api_a, r3), timeout=60, what="all at revision 3")
        for name in "abc":
            send_mail(ports[name], subject=f"extra-{name}")
        wait_until(lambda: {"extra-a", "extra-b", "extra-c"} <= set(received.subjects),
                   what="mail through every node's new listener")

        # A revert is an exact copy and reaches everyone; one that would break a node's
        # overrides is refused until they are removed.
        with pytest.raises(Fault) as info:
            api_c.configRevisionRevert(id=r3 - 1, comment="back to seven workers")
        assert "overrides" in info.value.message and "extra" in info.value.message
        api_b.configKeySet(key="local:listeners.extra.port", value="", comment="")
        api_c.configKeySet(key="local:listeners.extra.port", value="", comment="")
        r4 = api_c.configRevisionRevert(id=r3 - 1, comment="back to seven workers")
        assert api_c.configTextGet(revision=r4) == api_c.configTextGet(revision=r3 - 1)
        wait_until(lambda: _all_run(api_a, r4), what="all at the reverted revision")

        # The shared store goes away: mail keeps flowing, config calls fault clearly.
        shared_pg.pause()
        for node, name in ((a, "a"), (b, "b"), (c, "c")):
            send_mail(node.smtp_port, subject=f"outage-{name}")
        wait_until(lambda: {"outage-a", "outage-b", "outage-c"} <= set(received.subjects),
                   what="mail during the outage")
        with pytest.raises(Fault):
            api_a.configTextGet()
        # ... and comes back: the nodes reconnect and follow a new commit.
        shared_pg.resume()
        r5 = wait_until(lambda: api_a.configKeySet(key="queue.workers", value="5", comment="back"),
                        what="the shared store back")
        wait_until(lambda: _all_run(api_b, r5), timeout=30, what="all caught up after the outage")
        send_mail(b.smtp_port, subject="after")
        wait_until(lambda: "after" in received.subjects, what="mail after the outage")
