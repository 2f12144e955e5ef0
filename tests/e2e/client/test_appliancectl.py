"""appliancectl as an operator runs it: a node file, tables or --json, exit codes, provisioning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.node import REPO, RunningNode


@pytest.fixture(scope="module")
def ctl_config(three_nodes: list[RunningNode], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ctl") / "appliancectl.toml"
    lines = ['[defaults]', 'username = "admin"']
    for i, node in enumerate(three_nodes):
        lines += ["[[nodes]]", f'name = "n{i}"', f'url = "{node.soap_url}"',
                  f'password = "{node.admin_password}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def ctl(config: Path | None, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "appliance_client.ctl"]
    if config is not None:
        argv += ["--config", str(config)]
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": f"{REPO}:{REPO / 'clients'}", "COLUMNS": "200"}
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120, env=full_env,
                          stdin=subprocess.DEVNULL, cwd=REPO)


def test_queue_count_json_and_table(ctl_config: Path) -> None:
    done = ctl(ctl_config, "--json", "queue", "count")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["nodes"] == {"n0": 1, "n1": 3, "n2": 5}
    table = ctl(ctl_config, "queue", "count")
    assert table.returncode == 0
    rows = [line.split("│")[1:3] for line in table.stdout.splitlines() if line.count("│") == 3]
    assert {name.strip(): count.strip() for name, count in rows} == {
        "n0": "1", "n1": "3", "n2": "5", "total": "9"}


def test_queue_list_pages_with_the_printed_cursor(ctl_config: Path) -> None:
    first = json.loads(ctl(ctl_config, "--json", "queue", "list", "--limit", "5").stdout)
    assert len(first["items"]) == 5 and first["totals"] == {"n0": 1, "n1": 3, "n2": 5}
    second = json.loads(ctl(ctl_config, "--json", "queue", "list", "--limit", "5",
                            "--cursor", json.dumps(first["cursor"])).stdout)
    ids = {(i["node"], i["id"]) for i in first["items"] + second["items"]}
    assert len(second["items"]) == 4 and len(ids) == 9


def test_destructive_bulk_needs_yes(ctl_config: Path) -> None:
    refused = ctl(ctl_config, "queue", "delete", "--filter", "to~%@dom0.test")
    assert refused.returncode == 3 and "--yes" in refused.stderr
    assert json.loads(ctl(ctl_config, "--json", "queue", "count").stdout)["nodes"]["n0"] == 1


def test_bad_filter_and_a_down_node_give_exit_1(ctl_config: Path, tmp_path: Path) -> None:
    bad = ctl(ctl_config, "queue", "count", "--filter", "frm=x")
    assert bad.returncode == 1 and "unknown field 'frm'" in bad.stderr
    with_down = tmp_path / "down.toml"
    with_down.write_text(ctl_config.read_text() + '[[nodes]]\nname = "down"\n'
                         'url = "http://127.0.0.1:1/remote/"\npassword = "x"\n')
    partial = ctl(with_down, "--json", "queue", "count")
    assert partial.returncode == 1
    assert json.loads(partial.stdout)["nodes"] == {"n0": 1, "n1": 3, "n2": 5}
    assert "down:" in partial.stderr


def test_settings_from_environment_and_usage_errors(three_nodes: list[RunningNode]) -> None:
    node = three_nodes[0]
    env = {"APPLIANCECTL_NODES": node.soap_url, "APPLIANCECTL_USER": "admin",
           "APPLIANCECTL_PASSWORD": node.admin_password, "HOME": "/nonexistent"}
    done = ctl(None, "--json", "queue", "count", env=env)
    assert done.returncode == 0 and sum(json.loads(done.stdout)["nodes"].values()) == 1
    missing = ctl(Path("/nonexistent/ctl.toml"), "queue", "count")
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_shape_and_log_search(ctl_config: Path) -> None:
    shape = json.loads(ctl(ctl_config, "--json", "queue", "shape", "--field", "to-domain").stdout)
    assert {r["key"]: r["count"] for r in shape} == {"dom0.test": 1, "dom1.test": 3, "dom2.test": 5}
    found = ctl(ctl_config, "--json", "log", "search", "user4@dom2.test")
    assert found.returncode == 0, found.stderr
    lines = [json.loads(line) for line in found.stdout.splitlines()]
    # The message's own story is on n2; elsewhere only the logged searchlog call itself matches.
    story = [e for e in lines if "searchlog" not in e["line"]]
    assert story and {e["node"] for e in story} == {"n2"}


def test_provision_is_idempotent(ctl_config: Path, tmp_path: Path) -> None:
    spec = tmp_path / "provision.toml"
    spec.write_text('[[users]]\nname = "viewer"\npassword = "pw-123"\nrole = "readonly"\n\n'
                    '[config]\n"queue.workers" = 3\n')
    first = ctl(ctl_config, "--json", "provision", str(spec))
    assert first.returncode == 0, first.stderr
    changes = json.loads(first.stdout)
    assert set(changes) == {"n0", "n1", "n2"}
    assert "user viewer added" in changes["n0"] and "config queue.workers = 3" in changes["n0"]
    again = ctl(ctl_config, "--json", "provision", str(spec))
    assert again.returncode == 0 and json.loads(again.stdout) == {}
    users = json.loads(ctl(ctl_config, "--json", "user", "list").stdout)
    assert "viewer" in {u["username"] for u in users["n1"]}


def test_graph_renders_a_png_per_node(ctl_config: Path, tmp_path: Path) -> None:
    listed = json.loads(ctl(ctl_config, "--json", "--node", "n0", "graph-list").stdout)
    assert listed["n0"], "a node always has its built-in graphs"
    name = sorted(listed["n0"])[0]
    out = tmp_path / "g.png"
    done = ctl(ctl_config, "--json", "graph", name, "--png", str(out), "--period", "1h")
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    assert set(written) == {"n0", "n1", "n2"}
    for path in written.values():
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dkim_generate_list_delete(ctl_config: Path) -> None:
    refused = ctl(ctl_config, "dkim", "generate", "ctl.example", "s1")
    assert refused.returncode == 2 and "--node" in refused.stderr  # one key per node, never a fan-out
    made = ctl(ctl_config, "--node", "n0", "dkim", "generate", "ctl.example", "s1", "--algorithm", "ed25519")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith('s1._domainkey.ctl.example. IN TXT "v=DKIM1; k=ed25519; p=')
    again = ctl(ctl_config, "--node", "n0", "dkim", "generate", "ctl.example", "s1")
    assert again.returncode == 1 and "exists already" in again.stderr
    listed = json.loads(ctl(ctl_config, "--json", "dkim", "list").stdout)
    assert [(r["node"], r["domain"], r["selector"], r["active"]) for r in listed] == [
        ("n0", "ctl.example", "s1", True)]
    assert listed[0]["dnsrecord"] == made.stdout.strip()
    assert ctl(ctl_config, "dkim", "delete", "ctl.example", "s1").returncode == 3
    gone = ctl(ctl_config, "--node", "n0", "dkim", "delete", "ctl.example", "s1", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert json.loads(ctl(ctl_config, "--json", "dkim", "list").stdout) == []
