"""A process and its descendants, read from /proc: CPU seconds used and proportional set size."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def tree(root: int) -> list[int]:
    """`root` and every process below it (children, their children, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    """User+system CPU of the tree, including children that exited and were reaped."""
    total = 0
    for pid in tree(root):
        fields = _stat(pid)
        if fields is not None:  # utime stime cutime cstime: fields 14-17 of stat(5)
            total += sum(int(f) for f in fields[11:15])
    return total / TICK


def pss_kib(root: int) -> dict[int, tuple[str, int]]:
    """pid -> (name, Pss in KiB) for every process of the tree (smaps_rollup)."""
    out: dict[int, tuple[str, int]] = {}
    for pid in tree(root):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            name = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        pss = next((int(line.split()[1]) for line in rollup.splitlines()
                    if line.startswith("Pss:")), 0)
        out[pid] = (name[:60], pss)
    return out
