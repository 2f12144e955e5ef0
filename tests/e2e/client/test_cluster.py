"""Cluster helpers over real nodes: merged paging, sums, group-by, bulk, streamed commands."""

from __future__ import annotations

from pathlib import Path

from appliance_client.cluster import Cluster
from appliance_client.node import NodeSpec
from tests.e2e.client.conftest import spec
from tests.support.node import RunningNode


def _cluster(nodes: list[RunningNode], wsdl: Path) -> Cluster:
    return Cluster([spec(n, f"n{i}") for i, n in enumerate(nodes)], wsdl_source=str(wsdl))


def test_paging_across_unequal_nodes_visits_every_entry_once(three_nodes: list[RunningNode],
                                                            wsdl_file: Path) -> None:
    cluster = _cluster(three_nodes, wsdl_file)
    seen: list[tuple[str, int]] = []
    stamps: list[tuple[int, int]] = []
    cursor = None
    for _ in range(10):
        page = cluster.search(filter="", limit=2, cursor=cursor)
        assert not page.errors
        assert page.totals == {"n0": 1, "n1": 3, "n2": 5}
        if not page.items:
            break
        seen += [(label, item.id) for label, item in page.items]
        stamps += [(item.msgts0, item.id) for _, item in page.items]
        cursor = page.cursor
    assert len(seen) == 9 and len(set(seen)) == 9
    assert cursor == {"n0": 1, "n1": 3, "n2": 5}
    # Newest first across the whole cluster, page after page.
    assert [s[0] for s in stamps] == sorted((s[0] for s in stamps), reverse=True)
    cluster.close()


def test_counts_and_group_by_are_summed(three_nodes: list[RunningNode], wsdl_file: Path) -> None:
    cluster = _cluster(three_nodes, wsdl_file)
    total, result = cluster.count(filter="")
    assert total == 9 and result.values == {"n0": 1, "n1": 3, "n2": 5}
    rows, _ = cluster.group_by(filter="", field="from-domain")
    assert [(r.key, r.count, r.per_node) for r in rows] == [
        ("client.test", 9, {"n0": 1, "n1": 3, "n2": 5})]
    assert sum(rows[0].buckets) == 9
    cluster.close()


def test_bulk_hold_reports_per_node_counts(three_nodes: list[RunningNode], wsdl_file: Path) -> None:
    cluster = _cluster(three_nodes, wsdl_file)
    result = cluster.bulk("hold", filter="to~%@dom1.test or to~%@dom2.test")
    assert result.values == {"n0": 0, "n1": 3, "n2": 5}
    assert cluster.count(filter="queue=HOLD")[0] == 8
    retried = cluster.bulk("retry", filter="queue=HOLD")
    assert sum(int(v) for v in retried.values.values()) == 8
    cluster.close()


def test_command_output_streams_from_every_node(three_nodes: list[RunningNode], wsdl_file: Path) -> None:
    down = NodeSpec(url="http://127.0.0.1:1/remote/", username="a", password="b", name="down")
    cluster = Cluster([spec(n, f"n{i}") for i, n in enumerate(three_nodes)] + [down],
                      wsdl_source=str(wsdl_file))
    output: dict[str, bytes] = {}
    for label, chunk in cluster.run_command(["queuestat"]):
        output[label] = output.get(label, b"") + chunk
    assert set(output) == {"n0", "n1", "n2"}
    assert b"total" in output["n2"]
    assert set(cluster.errors) == {"down"}
    cluster.close()
