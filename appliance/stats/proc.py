"""Host measurements read from /proc (root injectable for tests): CPU, load, interfaces, TCP."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

_IFACE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_ESTABLISHED = "01"  # include/net/tcp_states.h: TCP_ESTABLISHED


def cpu_jiffies(proc: Path) -> dict[str, float]:
    """Cumulative CPU time in USER_HZ ticks, all CPUs: user, system, iowait, idle (proc(5))."""
    for line in (proc / "stat").read_text().splitlines():
        if line.startswith("cpu "):
            f = [float(x) for x in line.split()[1:]] + [0.0] * 8
            user, nice, system, idle, iowait, irq, softirq, steal = f[:8]
            return {"user": user + nice, "system": system + irq + softirq + steal, "iowait": iowait, "idle": idle}
    raise ValueError("no cpu line in /proc/stat")


def load_average(proc: Path) -> dict[str, float]:
    one, five, fifteen = (proc / "loadavg").read_text().split()[:3]
    return {"load1": float(one), "load5": float(five), "load15": float(fifteen)}


def interfaces(proc: Path) -> dict[str, dict[str, float]]:
    """Per interface: cumulative rxbytes, rxpackets, txbytes, txpackets (/proc/net/dev)."""
    out: dict[str, dict[str, float]] = {}
    for line in (proc / "net" / "dev").read_text().splitlines()[2:]:
        name, sep, rest = line.partition(":")
        name = name.strip()
        if not sep or not _IFACE.match(name):
            continue
        f = rest.split()
        out[name] = {"rxbytes": float(f[0]), "rxpackets": float(f[1]),
                     "txbytes": float(f[8]), "txpackets": float(f[9])}
    return out


def established_connections(proc: Path, ports: Iterable[int]) -> int:
    """Established TCP connections whose local port is one of `ports` (IPv4 and IPv6)."""
    wanted = {f"{p:04X}" for p in ports}
    if not wanted:
        return 0
    total = 0
    for table in ("tcp", "tcp6"):
        path = proc / "net" / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            f = line.split()
            if len(f) > 3 and f[3] == _ESTABLISHED and f[1].rpartition(":")[2] in wanted:
                total += 1
    return total
