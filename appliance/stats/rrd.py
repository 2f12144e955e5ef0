"""Round-robin databases (real rrdtool files): archives, create, update, list, read, render."""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import rrdtool

from appliance.errors import InvalidInput, NotFound
from appliance.stats.sources import GRAPH_NAME, Measurement

# (resolution in seconds, rows): 1-minute for a day, 5-minute for a week, hourly for ~3 months,
# daily for 5 years.
ARCHIVES = ((60, 1440), (300, 2016), (3600, 2232), (86400, 1830))
STEPS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)  # divide a minute, so every archive lines up
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def archives(step: int) -> list[str]:
    """RRA definitions for `step`; below a minute, an extra hour at full resolution first."""
    if step not in STEPS:
        raise InvalidInput(f"rrd step must be one of {STEPS}")
    rows = [(1, 3600)] if step < 60 else []
    rows += [(res // step, count) for res, count in ARCHIVES]
    return [f"RRA:{cf}:0.5:{pdp}:{count}" for pdp, count in rows for cf in ("AVERAGE", "MAX")]


def path_of(rrd_dir: Path, name: str) -> Path:
    """The file of graph `name`; a name that is not a plain graph name is NotFound."""
    if not GRAPH_NAME.match(name) or ".." in name:
        raise NotFound(f"no graph {name!r}")
    return rrd_dir / f"{name}.rrd"


def create(path: Path, m: Measurement, *, step: int, heartbeat: int, now: int) -> None:
    """A new database; a counter that starts at zero gets a zero baseline one step back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = [f"DS:{s.name}:{s.kind}:{heartbeat}:{'0' if s.kind == 'DERIVE' else 'U'}:U" for s in m.sources]
    tmp = path.with_name(path.name + ".tmp")
    rrdtool.create(str(tmp), "--start", str(now - 2 * step), "--step", str(step), *ds, *archives(step))
    if m.from_zero:
        rrdtool.update(str(tmp), f"{now - step}:" + ":".join("0" for _ in m.sources))
    os.replace(tmp, path)  # readers never see a half-created file


def update(path: Path, m: Measurement, *, ts: int) -> None:
    """One update. rrdtool's own lock is a POSIX lock, which threads of one process share, so
    an flock (per open file) also keeps graph_file() in another thread from reading mid-write."""
    values = ":".join(_value(m.values.get(s.name)) for s in m.sources)
    with open(path, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            rrdtool.update(str(path), f"{ts}:{values}")
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _value(v: float | None) -> str:
    if v is None:
        return "U"
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def last_update(path: Path) -> int:
    return int(rrdtool.last(str(path)))


def graph_list(rrd_dir: Path) -> list[str]:
    if not rrd_dir.is_dir():
        return []
    return sorted(p.name[:-4] for p in rrd_dir.iterdir() if p.name.endswith(".rrd") and p.is_file()
                  and GRAPH_NAME.match(p.name[:-4]))


def graph_file(rrd_dir: Path, name: str) -> bytes:
    """The raw RRD file, read under a shared lock so an update is never seen half-written."""
    path = path_of(rrd_dir, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except (FileNotFoundError, OSError) as exc:
        raise NotFound(f"no graph {name!r}") from exc
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotFound(f"no graph {name!r}")
        fcntl.flock(f, fcntl.LOCK_SH)  # against this process's updater (see update())
        fcntl.lockf(f, fcntl.LOCK_SH)  # against rrdtool updating from another process
        try:
            return f.read()
        finally:
            fcntl.lockf(f, fcntl.LOCK_UN)
            fcntl.flock(f, fcntl.LOCK_UN)


def data_sources(path: Path) -> list[tuple[str, str]]:
    """(name, type) of each DS, in file order."""
    info = rrdtool.info(str(path))
    found: dict[int, tuple[str, str]] = {}
    for key, value in info.items():
        if key.startswith("ds[") and key.endswith("].type"):
            name = key[3:-6]
            found[int(info[f"ds[{name}].index"])] = (name, str(value))
    return [found[i] for i in sorted(found)]


def render_png(rrd_dir: Path, name: str, out: Path, *, start: int, end: int, title: str = "") -> None:
    """A PNG of the graph with one line and a legend (average, max, last) per data source."""
    path = path_of(rrd_dir, name)
    if not path.is_file():
        raise NotFound(f"no graph {name!r}")
    if end <= start:
        raise InvalidInput("end must be after start")
    src = str(path).replace(":", "\\:")
    args: list[str] = []
    for i, (ds, kind) in enumerate(data_sources(path)):
        args.append(f"DEF:{ds}={src}:{ds}:AVERAGE")
        shown = ds
        if kind in ("DERIVE", "COUNTER"):  # per second in the file; per minute reads better
            shown = f"{ds}_m"
            args.append(f"CDEF:{shown}={ds},60,*")
        legend = f"{ds}/min" if shown != ds else ds
        args += [f"LINE2:{shown}{COLORS[i % len(COLORS)]}:{legend:<12}",
                 f"GPRINT:{shown}:AVERAGE:avg %8.2lf", f"GPRINT:{shown}:MAX:max %8.2lf",
                 f"GPRINT:{shown}:LAST:last %8.2lf\\l"]
    rrdtool.graph(str(out), "--imgformat", "PNG", "--start", str(start), "--end", str(end),
                  "--title", title or name, "--width", "720", "--height", "240", *args)


def fetch(path: Path, *, start: int, end: int, cf: str = "AVERAGE", resolution: int | None = None
          ) -> tuple[Sequence[str], list[tuple[float | None, ...]]]:
    """(DS names, rows) between start and end (a thin wrapper for tests and the sampler)."""
    extra = ["-r", str(resolution)] if resolution else []
    (_, _, _), names, rows = rrdtool.fetch(str(path), cf, "-s", str(start), "-e", str(end), *extra)
    return names, rows
