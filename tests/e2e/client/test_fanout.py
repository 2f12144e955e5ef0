"""The fan-out client against real nodes: staged calls, one dispatch, per-node errors."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from appliance_client.cluster import Cluster
from appliance_client.errors import NodeFault, NodeTimeout, NodeTransportError
from appliance_client.fanout import FanOut
from appliance_client.node import NodeSpec
from tests.e2e.client.conftest import spec
from tests.support.node import RunningNode


def test_staged_calls_then_one_dispatch(three_nodes: list[RunningNode], wsdl_file: Path) -> None:
    fan = FanOut(str(wsdl_file))
    c0, c2 = fan.client(spec(three_nodes[0], "n0")), fan.client(spec(three_nodes[2], "n2"))
    count0 = c0.mailQueueCount(filter="")
    page2 = c2.mailQueue(filter="", offset=0, limit=2, options={"totalhits": True})
    bad = c0.mailQueue(filter="frm=x", offset=0, limit=1)
    with pytest.raises(RuntimeError):
        count0.result()  # nothing is sent before dispatch
    fan.dispatch()
    assert count0.result() == 1
    assert page2.result().totalhits == 5
    assert len(page2.result().result.item) == 2
    with pytest.raises(NodeFault) as fault:
        bad.result()
    assert "unknown field 'frm'" in fault.value.faultstring
    with pytest.raises(TypeError):
        c0.mailQueueCount(nonsense=1)  # a wrong argument fails while staging
    fan.close()


def test_errors_are_per_node(three_nodes: list[RunningNode], wsdl_file: Path) -> None:
    down = NodeSpec(url="http://127.0.0.1:1/remote/", username="a", password="b", name="down")
    wrong = NodeSpec(url=three_nodes[1].soap_url, username="admin", password="wrong", name="wrong")
    cluster = Cluster([spec(three_nodes[0], "n0"), down, wrong], wsdl_source=str(wsdl_file))
    result = cluster.call("mailQueueCount", filter="")
    assert result.values == {"n0": 1}
    assert isinstance(result.errors["down"], NodeTransportError)
    assert result.errors["wrong"].http_status == 401  # type: ignore[attr-defined]
    cluster.close()


def test_a_round_has_every_node_in_flight_at_once(
    three_nodes: list[RunningNode], wsdl_file: Path, delay_proxy,  # type: ignore[no-untyped-def]
) -> None:
    # Each proxy passes its connection on only once all three wait at the barrier together:
    # a sequential client would leave the first one waiting alone until the barrier breaks.
    together = threading.Barrier(3, timeout=30)
    gated = [delay_proxy(n.soap_port, hold=together.wait) for n in three_nodes]
    specs = [NodeSpec(url=f"http://127.0.0.1:{p.port}/remote/", username="admin",
                      password=n.admin_password, name=f"gated{i}", timeout=60)
             for i, (p, n) in enumerate(zip(gated, three_nodes))]
    cluster = Cluster(specs, wsdl_source=str(wsdl_file))
    result = cluster.call("mailQueueCount", filter="")
    assert result.errors == {}
    assert result.values == {"gated0": 1, "gated1": 3, "gated2": 5}
    assert [p.held for p in gated] == [1, 1, 1] and not together.broken
    cluster.close()


def test_timeout_fails_only_the_slow_node(
    three_nodes: list[RunningNode], wsdl_file: Path, delay_proxy,  # type: ignore[no-untyped-def]
) -> None:
    released = threading.Event()  # the slow node answers only after the round: never in time
    proxy = delay_proxy(three_nodes[1].soap_port, hold=lambda: released.wait(60))
    slow = NodeSpec(url=f"http://127.0.0.1:{proxy.port}/remote/", username="admin",
                    password=three_nodes[1].admin_password, name="slow", timeout=1.0)
    cluster = Cluster([spec(three_nodes[0], "n0"), slow], wsdl_source=str(wsdl_file))
    try:
        result = cluster.call("mailQueueCount", filter="")
        assert not released.is_set() and proxy.held == 0  # the round ended with the node held
    finally:
        released.set()
    assert result.values == {"n0": 1}
    assert isinstance(result.errors["slow"], NodeTimeout)
    cluster.close()


def test_awaitable_dispatch(three_nodes: list[RunningNode], wsdl_file: Path) -> None:
    fan = FanOut(str(wsdl_file))
    calls = [fan.stage(spec(n, f"n{i}"), "getSerial") for i, n in enumerate(three_nodes)]
    asyncio.run(fan.dispatch_async())
    serials = [c.result() for c in calls]
    assert len(set(serials)) == 3 and all(serials)
    fan.close()


def test_gzip_requests_and_connection_reuse(three_nodes: list[RunningNode], wsdl_file: Path) -> None:
    node = three_nodes[2]
    fan = FanOut(str(wsdl_file))
    gz = spec(node, "gz", gzip_requests=True)
    for _ in range(3):
        call = fan.stage(gz, "mailQueueCount", filter="to~dom2.test")
        fan.dispatch()
        assert call.result() == 5
    # One easy handle serves every round: libcurl's connection cache keeps the connection.
    assert len(fan._idle) == 1
    fan.close()


def test_bad_certificate_is_a_per_node_tls_error(tmp_path: Path, three_nodes: list[RunningNode],
                                                 wsdl_file: Path) -> None:
    tls_node = RunningNode(tmp_path)
    tls_node.extra_args = ["--soap-listen", "https://127.0.0.1:0"]
    with tls_node:
        url = tls_node.soap_url
        assert url.startswith("https://")
        cert = tls_node.data_dir / "tls" / "node.crt"
        strict = NodeSpec(url=url, username="admin", password=tls_node.admin_password, name="strict")
        trusted = NodeSpec(url=url, username="admin", password=tls_node.admin_password,
                           name="trusted", ca_file=str(cert))
        cluster = Cluster([strict, trusted, spec(three_nodes[0], "n0")], wsdl_source=str(wsdl_file))
        result = cluster.call("mailQueueCount", filter="")
        assert result.values == {"trusted": 0, "n0": 1}
        err = result.errors["strict"]
        assert isinstance(err, NodeTransportError) and "certificate" in err.message.lower()
        cluster.close()
