"""Several real nodes on loopback, a delaying proxy for a slow node, node specs for the client."""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance_client.node import NodeSpec
from tests.support.node import RunningNode


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


class DelayProxy:
    """A TCP proxy on loopback that holds each connection's first bytes for `delay` seconds."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.delay = delay
        self.target_port = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        time.sleep(self.delay)
        with client, socket.create_connection(("127.0.0.1", self.target_port)) as upstream:
            def pump(src: socket.socket, dst: socket.socket) -> None:
                try:
                    while data := src.recv(65536):
                        dst.sendall(data)
                except OSError:
                    pass
                finally:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
            back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
            back.start()
            pump(client, upstream)
            back.join(timeout=30)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture
def delay_proxy() -> Iterator[type[DelayProxy]]:
    made: list[DelayProxy] = []

    def factory(target_port: int, delay: float) -> DelayProxy:
        proxy = DelayProxy(target_port, delay)
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
