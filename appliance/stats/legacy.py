"""The old statd's counters: `KEY=VALUE` values under the old names, and every graph source.

Names are what `statd -l` lists and `statd -g NAME` streams: the old API's counters
(`mail-queue-count`, `system-cpu-usage`, `interface-<if>-bandwidth`, ... as in OLD_COUNTERS) and
every source of every graph as `GRAPH:SOURCE` (`queue:defer`, `delivery:deliver`, ...). Levels
are shown as they are; cumulative counts (rrdtool DERIVE sources) as a rate per second over the
interval between two snapshots, as rrdtool graphs them.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from sqlalchemy import func, select

from appliance.db.models import QueueEntry
from appliance.stats.sources import Measurement, Probe, measure
from appliance.types import Action, QueueState

# Old name -> what it means here (the README's table); `<if>` is each network interface.
OLD_COUNTERS: dict[str, str] = {
    "mail-queue-count": "queue entries in any state (ACTIVE + DEFER + HOLD)",
    "mail-quarantine-count": "queue entries held by a policy quarantine (HOLD, action QUARANTINE)",
    "system-cpu-usage": "CPU busy (user + system), percent of all CPUs over the interval",
    "system-mem-usage": "memory in use (MemTotal - MemAvailable), percent",
    "system-swap-usage": "swap in use, percent (0 without swap)",
    "system-storage-usage": "the node's data directory file system in use, percent",
    "interface-<if>-bandwidth": "bytes per second received + sent on interface <if>",
    "interface-<if>-packets": "packets per second received + sent on interface <if>",
}
# Old names this node does not have (no licence, no per-disk I/O accounting).
NOT_PROVIDED = ("mail-license-count", "system-storage-iops", "system-storage-latency",
                "system-swap-iops")


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Every graph's measurement and the old names' levels at one moment."""

    ts: float
    measurements: tuple[Measurement, ...]
    levels: dict[str, float]


def take(probe: Probe, *, now: float, storage: Path | None = None) -> Snapshot:
    levels = _memory(probe.proc)
    if storage is not None:
        levels["system-storage-usage"] = storage_usage(storage)
    if probe.store is not None:
        with probe.store.transaction(read_only=True) as session:
            total, quarantined = session.execute(select(
                func.count(QueueEntry.id),
                func.count(QueueEntry.id).filter(QueueEntry.state == QueueState.HOLD.value,
                                                 QueueEntry.action == Action.QUARANTINE.value),
            )).one()
        levels["mail-queue-count"] = float(total)
        levels["mail-quarantine-count"] = float(quarantined or 0)
    return Snapshot(now, tuple(measure(probe, now=now)), levels)


def counters(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Every counter name with its value over the interval from `before` to `after`."""
    elapsed = after.ts - before.ts
    earlier = {m.graph: m for m in before.measurements}
    out: dict[str, float] = dict(after.levels)
    rates: dict[str, dict[str, float]] = {}
    for m in after.measurements:
        prev = earlier.get(m.graph)
        values = rates.setdefault(m.graph, {})
        for s in m.sources:
            value = m.values.get(s.name, 0.0)
            if s.kind == "DERIVE":
                old = prev.values.get(s.name, value) if prev is not None else value
                value = max(0.0, (value - old) / elapsed) if elapsed > 0 else 0.0
            values[s.name] = value
            out[f"{m.graph}:{s.name}"] = value
    cpu = rates.get("cpu")
    if cpu:
        total = sum(cpu.values())
        out["system-cpu-usage"] = 100.0 * (cpu["user"] + cpu["system"]) / total if total else 0.0
    for graph, values in rates.items():
        if graph.startswith("net-"):
            iface = graph[len("net-"):]
            out[f"interface-{iface}-bandwidth"] = values["rxbytes"] + values["txbytes"]
            out[f"interface-{iface}-packets"] = values["rxpackets"] + values["txpackets"]
    return out


def select_names(values: dict[str, float], name: str) -> list[tuple[str, float]]:
    """What `statd -g NAME` shows: the counter NAME, or every source of the graph NAME."""
    return sorted((k, v) for k, v in values.items() if k == name or k.startswith(name + ":"))


def format_value(value: float) -> str:
    """Whole numbers without a point, others with two decimals (old clients read int or float)."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.2f}"


def storage_usage(path: Path) -> float:
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    return 100.0 * (total - free) / total if total else 0.0


def _memory(proc: Path) -> dict[str, float]:
    """system-mem-usage and system-swap-usage from /proc/meminfo (proc(5)); absent: nothing."""
    try:
        text = (proc / "meminfo").read_text()
    except OSError:
        return {}
    kb: dict[str, float] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            kb[name.strip()] = float(fields[0])
    out = {}
    if kb.get("MemTotal"):
        available = kb.get("MemAvailable", kb.get("MemFree", 0.0))
        out["system-mem-usage"] = 100.0 * (kb["MemTotal"] - available) / kb["MemTotal"]
    swap = kb.get("SwapTotal", 0.0)
    out["system-swap-usage"] = 100.0 * (swap - kb.get("SwapFree", 0.0)) / swap if swap else 0.0
    return out
