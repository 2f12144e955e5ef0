"""`appliance graph` renders a node's RRD as a PNG; `appliance statd` prints live samples."""

from __future__ import annotations

from pathlib import Path

from tests.support.node import RunningNode
from tests.support.wait import wait_until


def test_graph_png_and_statd_lines(tmp_path: Path) -> None:
    node = RunningNode(tmp_path)
    with node:
        wait_until(lambda: list((node.data_dir / "rrd").glob("*.rrd")), timeout=60,
                   what="the node's first graph file")
    name = sorted(p.stem for p in (node.data_dir / "rrd").glob("*.rrd"))[0]
    png = tmp_path / "graph.png"
    done = node.cli("graph", name, "--png", str(png), "--start=-1h")
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = node.cli("graph", "no-such-graph", "--png", str(png))
    assert missing.returncode != 0 and "no-such-graph" in missing.stderr
    statd = node.cli("statd", "-g", "load", "-n", "2")
    assert statd.returncode == 0, statd.stderr
    lines = statd.stdout.splitlines()
    assert len(lines) == 2 and all("=" in line for line in lines)
