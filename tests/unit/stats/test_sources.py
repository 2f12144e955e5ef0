"""/proc parsing, RRA layout and the sampler's lines, over a fake /proc with an injected clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import InvalidInput, NotFound
from appliance.stats import proc
from appliance.stats.rrd import archives, path_of
from appliance.stats.sampler import sample_lines
from appliance.stats.sources import Probe

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:09C4 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0
   1: 0100007F:09C4 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0
   2: 0100007F:09C4 0100007F:D432 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0
   3: 0100007F:D431 0100007F:09C4 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0
"""


def fake_proc(root: Path, *, user: int, rx: int) -> Path:
    (root / "net").mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text(f"cpu  {user} 5 30 1000 7 1 2 0 0 0\ncpu0 1 2 3 4\n")
    (root / "loadavg").write_text("0.50 0.25 0.10 1/100 42\n")
    (root / "net" / "dev").write_text(
        "Inter-| Receive | Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes ...\n"
        f"  eth0: {rx} 10 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n  bad/name: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n"
    )
    (root / "net" / "tcp").write_text(TCP)
    return root


def test_proc_readers(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, user=100, rx=4000)
    assert proc.cpu_jiffies(root) == {"user": 105.0, "system": 33.0, "iowait": 7.0, "idle": 1000.0}
    assert proc.load_average(root) == {"load1": 0.5, "load5": 0.25, "load15": 0.1}
    assert proc.interfaces(root) == {"eth0": {"rxbytes": 4000.0, "rxpackets": 10.0, "txbytes": 500.0, "txpackets": 5.0}}
    # Only ESTABLISHED sockets whose *local* port is a listener's (0x09C4 = 2500).
    assert proc.established_connections(root, [2500]) == 2
    assert proc.established_connections(root, [25]) == 0


def test_archives_keep_a_day_a_week_months_and_years() -> None:
    assert archives(60) == [
        f"RRA:{cf}:0.5:{pdp}:{rows}" for pdp, rows in ((1, 1440), (5, 2016), (60, 2232), (1440, 1830))
        for cf in ("AVERAGE", "MAX")
    ]
    fine = archives(1)
    assert fine[:2] == ["RRA:AVERAGE:0.5:1:3600", "RRA:MAX:0.5:1:3600"]
    assert "RRA:AVERAGE:0.5:60:1440" in fine and "RRA:AVERAGE:0.5:86400:1830" in fine
    with pytest.raises(InvalidInput):
        archives(7)


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x" * 300, "a..b"])
def test_graph_names_that_could_leave_the_directory_are_not_found(tmp_path: Path, name: str) -> None:
    with pytest.raises(NotFound):
        path_of(tmp_path, name)


def test_sampler_prints_levels_and_per_second_rates(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, user=100, rx=4000)
    now = [1000.0]
    steps = iter([(300, 5000), (300, 9000)])

    def sleep(seconds: float) -> None:
        assert seconds == pytest.approx(1.0)
        user, rx = next(steps)
        fake_proc(root, user=user, rx=rx)
        now[0] += 1.0

    lines = list(sample_lines("cpu", probe=Probe(proc=root), clock=lambda: now[0], sleep=sleep, count=1))
    assert lines == ["1001 user=200.00 system=0.00 iowait=0.00 idle=0.00"]
    lines = list(sample_lines("net-eth0", probe=Probe(proc=root), clock=lambda: now[0], sleep=sleep, count=1))
    assert lines == ["1002 rxbytes=4000.00 txbytes=0.00 rxpackets=0.00 txpackets=0.00"]
    assert list(sample_lines("load", probe=Probe(proc=root), clock=lambda: now[0], sleep=lambda s: None, count=1)) == [
        "1002 load1=0.5 load5=0.25 load15=0.1"]


def test_sampler_refuses_an_unknown_graph(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        next(sample_lines("nope", probe=Probe(proc=fake_proc(tmp_path, user=1, rx=1)), sleep=lambda s: None))
