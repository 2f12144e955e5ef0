"""Several real nodes on loopback, a delaying proxy for a slow node, node specs for the client."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance_client.node import NodeSpec
from tests.support.node import RunningNode
from tests.support.proxy import DelayProxy


def send(node: RunningNode, rcpts: list[str], *, subject: str = "test") -> None:
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as smtp:
        for rcpt in rcpts:
            smtp.sendmail("sender@client.test", [rcpt], f"Subject: {subject}\r\n\r\nbody\r\n")


def spec(node: RunningNode, name: str, **kw: object) -> NodeSpec:
    return NodeSpec(url=node.soap_url, username="admin", password=node.admin_password, name=name, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RunningNode]]:
    """Nodes n0, n1, n2 holding 1, 3 and 5 queued entries (held: nothing is delivered)."""
    nodes: list[RunningNode] = []
    try:
        for i in range(3):
            # Relay to a closed port: entries stay queued (deferred), which is all these tests need.
            node = RunningNode(tmp_path_factory.mktemp(f"n{i}"), relay=("127.0.0.1", 9)).start()
            nodes.append(node)
            send(node, [f"user{j}@dom{i}.test" for j in range(2 * i + 1)], subject=f"node {i}")
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
def delay_proxy() -> Iterator[type[DelayProxy]]:
    made: list[DelayProxy] = []

    def factory(target_port: int, delay: float = 0.0, **options: Any) -> DelayProxy:
        proxy = DelayProxy(target_port, delay, **options)
        made.append(proxy)
        return proxy

    yield factory  # type: ignore[misc]
    for proxy in made:
        proxy.close()


@pytest.fixture(scope="module")
def wsdl_file(three_nodes: list[RunningNode], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The WSDL as a node serves it, saved once (clients cache it rather than fetch per node)."""
    import requests

    node = three_nodes[0]
    text = requests.get(node.soap_url + "?wsdl", auth=("admin", node.admin_password), timeout=30).content
    path = tmp_path_factory.mktemp("wsdl") / "appliance.wsdl"
    path.write_bytes(text)
    return path
