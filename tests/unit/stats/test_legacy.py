"""The old statd counters from two snapshots (pure): names, rates, CPU and interface sums."""

from __future__ import annotations

from pathlib import Path

from appliance.stats.legacy import Snapshot, counters, format_value, select_names, storage_usage, take
from appliance.stats.sources import DataSource, Measurement, Probe


def m(graph: str, kind: str, **values: float) -> Measurement:
    return Measurement(graph=graph, title=graph, label="", values=values,
                       sources=tuple(DataSource(n, kind) for n in values))


def test_counters_over_an_interval() -> None:
    before = Snapshot(100.0, (m("cpu", "DERIVE", user=100, system=50, iowait=0, idle=850),
                              m("net-eth0", "DERIVE", rxbytes=0, txbytes=0, rxpackets=0, txpackets=0),
                              m("queue", "GAUGE", active=1, defer=2, hold=0)),
                      {"mail-queue-count": 3.0})
    after = Snapshot(102.0, (m("cpu", "DERIVE", user=130, system=70, iowait=0, idle=1000),
                             m("net-eth0", "DERIVE", rxbytes=3000, txbytes=1000, rxpackets=20, txpackets=10),
                             m("queue", "GAUGE", active=0, defer=4, hold=1)),
                     {"mail-queue-count": 5.0, "system-mem-usage": 41.5})
    values = counters(before, after)
    assert values["system-cpu-usage"] == 25.0  # (30 + 20) busy of 200 ticks
    assert values["cpu:user"] == 15.0 and values["cpu:idle"] == 75.0  # per second
    assert values["interface-eth0-bandwidth"] == 2000.0 and values["interface-eth0-packets"] == 15.0
    assert values["queue:defer"] == 4.0 and values["mail-queue-count"] == 5.0
    assert select_names(values, "queue") == [("queue:active", 0.0), ("queue:defer", 4.0), ("queue:hold", 1.0)]
    assert select_names(values, "mail-queue-count") == [("mail-queue-count", 5.0)]
    assert select_names(values, "que") == []
    assert [format_value(v) for v in (5.0, 41.5, 0.125, 1e20)] == ["5", "41.50", "0.12", "100000000000000000000.00"]


def test_take_reads_memory_and_storage(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "stat").write_text("cpu  1 0 1 8 0 0 0 0\n")
    (proc / "loadavg").write_text("0.5 0.4 0.3 1/100 1\n")
    (proc / "net" / "dev").write_text("h1\nh2\n")
    (proc / "meminfo").write_text("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 250 kB\n"
                                  "SwapTotal: 0 kB\nSwapFree: 0 kB\n")
    snap = take(Probe(proc=proc), now=5.0, storage=tmp_path / "not-yet" / "rrd")
    assert snap.levels["system-mem-usage"] == 75.0 and snap.levels["system-swap-usage"] == 0.0
    assert 0 < snap.levels["system-storage-usage"] <= 100
    assert snap.levels["system-storage-usage"] == storage_usage(tmp_path)
    assert "mail-queue-count" not in snap.levels  # no store: no queue counters
