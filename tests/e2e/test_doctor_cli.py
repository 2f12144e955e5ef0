"""`appliance doctor` on a real data dir: healthy, then with faults planted."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.certs import write_certificate
from tests.support.node import RunningNode
from tests.support.postgres import free_port

CONFIG = """
[relay]
mynetworks = [{networks}]

[[listeners]]
id = "inbound"
address = "{address}"
port = 2525

[[transports]]
id = "default"
nexthop = "127.0.0.1:{relay}"
"""


def _prepare(tmp_path: Path, *, address: str, relay: int) -> RunningNode:
    node = RunningNode(tmp_path)
    config = tmp_path / "config.toml"
    networks = '"0.0.0.0/0"' if address == "0.0.0.0" else '"127.0.0.0/8"'
    config.write_text(CONFIG.format(address=address, relay=relay, networks=networks))
    done = node.cli("config", "edit", "--file", str(config))
    assert done.returncode == 0, done.stderr
    node.data_dir.chmod(0o750)
    (node.data_dir / "spool").mkdir(mode=0o750, exist_ok=True)
    return node


def test_a_healthy_node_passes(tmp_path: Path) -> None:
    with socket.socket() as relay:
        relay.bind(("127.0.0.1", 0))
        relay.listen()
        node = _prepare(tmp_path, address="127.0.0.1", relay=relay.getsockname()[1])
        done = node.cli("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    assert "OK    relay: transport default" in done.stdout


def test_planted_faults_are_each_found_with_a_fix(tmp_path: Path) -> None:
    node = _prepare(tmp_path, address="0.0.0.0", relay=free_port())
    node.data_dir.chmod(0o777)
    write_certificate(node.data_dir / "tls" / "node.crt", days_from_now_start=-30,
                      days_from_now_end=-1)
    done = node.cli("doctor")
    node.data_dir.chmod(0o750)
    assert done.returncode == 1
    out = done.stdout
    assert "FAIL  data dir:" in out and "world-writable" in out
    assert "FAIL  relay: transport default: cannot connect" in out
    assert "FAIL  certificate:" in out and "expired" in out
    assert "FAIL  open relay: relay.mynetworks holds 0.0.0.0/0" in out
    assert out.count("fix:") >= 4
