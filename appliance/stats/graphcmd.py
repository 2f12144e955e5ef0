"""`appliance graph NAME --png out.png` and `appliance statd -g GRAPH`: the local CLI of stats."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from appliance.config.schema import Config
from appliance.db.engine import Store
from appliance.errors import InvalidInput
from appliance.stats import rrd
from appliance.stats.component import probe_for
from appliance.stats.sampler import sample_lines
from appliance.stats.sources import describe

_RELATIVE = re.compile(r"^-(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, *, now: float) -> int:
    """`now`, `-<n><s|m|h|d|w>` (before now) or Unix seconds."""
    if text == "now":
        return int(now)
    m = _RELATIVE.match(text)
    if m:
        return int(now) - int(m.group(1)) * _UNITS[m.group(2)]
    if text.isdigit():
        return int(text)
    raise InvalidInput(f"not a time: {text!r} (use now, -1d, -6h, or Unix seconds)")


def graph_command(rrd_dir: Path, name: str, png: Path, *, start: str = "-1d", end: str = "now",
                  clock: Callable[[], float] = time.time, out: TextIO = sys.stdout) -> int:
    now = clock()
    rrd.render_png(rrd_dir, name, png, start=parse_time(start, now=now), end=parse_time(end, now=now),
                   title=describe(name))
    print(f"wrote {png}", file=out)
    return 0


def statd_command(database_url: str, graph: str, *, count: int | None = None, out: TextIO = sys.stdout) -> int:
    store = Store(database_url)
    try:
        for line in sample_lines(graph, probe=probe_for(store, Config()), count=count):
            print(line, file=out, flush=True)
    finally:
        store.dispose()
    return 0
