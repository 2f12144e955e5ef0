"""Graph data for the browser: graphFile's raw RRD bytes read with rrdtool, `statd -g` output
parsed into samples, statList rows folded into pie slices. Plain JSON-ready values out."""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import rrdtool

from appliance.errors import InvalidInput

# Time ranges the Reporting page offers (seconds back from now); "live" is statd -g.
RANGES: dict[str, int] = {
    "1h": 3600, "6h": 6 * 3600, "1d": 86400, "1w": 7 * 86400, "1m": 31 * 86400, "1y": 366 * 86400,
}
POINTS = 600  # about how many points one graph gets: rrdtool picks the archive that fits


@dataclasses.dataclass(frozen=True, kw_only=True)
class GraphData:
    """Aligned series of one graph: `ts` (Unix seconds) and one list per source."""

    names: list[str]
    kinds: list[str]  # GAUGE | DERIVE | COUNTER | ABSOLUTE
    units: list[str]  # "" for levels, "/min" for cumulative sources (as the node's PNGs)
    step: int
    ts: list[int]
    values: list[list[float | None]]

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_rrd(data: bytes, *, start: int, end: int, points: int = POINTS) -> GraphData:
    """The sources of one RRD file between start and end; per-second sources as per minute."""
    if end <= start:
        raise InvalidInput("end must be after start")
    if not data:
        raise InvalidInput("the graph file is empty")
    # rrdtool reads files only: the bytes go to a private temporary file for the two calls.
    fd, path = tempfile.mkstemp(suffix=".rrd", prefix="console-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            kinds = _ds_kinds(path)
            resolution = max(1, (end - start) // points)
            (first, _last, step), names, rows = rrdtool.fetch(
                path, "AVERAGE", "-s", str(start), "-e", str(end), "-r", str(resolution))
        except rrdtool.OperationalError as exc:
            raise InvalidInput(f"not a graph file rrdtool can read: {exc}") from exc
    finally:
        os.unlink(path)
    names = list(names)
    per_minute = [kinds.get(n, "GAUGE") in ("DERIVE", "COUNTER", "ABSOLUTE") for n in names]
    columns: list[list[float | None]] = [[] for _ in names]
    for row in rows:
        for i, value in enumerate(row):
            if value is None or math.isnan(value):
                columns[i].append(None)
            else:
                columns[i].append(value * 60 if per_minute[i] else value)
    ts = [first + step * (i + 1) for i in range(len(rows))]  # a row's time is its interval's end
    return GraphData(names=names, kinds=[kinds.get(n, "GAUGE") for n in names],
                     units=["/min" if p else "" for p in per_minute], step=step, ts=ts, values=columns)


def _ds_kinds(path: str) -> dict[str, str]:
    info = rrdtool.info(path)
    return {key[3:-6]: str(value) for key, value in info.items()
            if key.startswith("ds[") and key.endswith("].type")}


def time_range(name: str, *, now: int) -> tuple[int, int]:
    if name not in RANGES:
        raise InvalidInput(f"range must be one of {', '.join(RANGES)}")
    return now - RANGES[name], now


class StatdStream:
    """`statd -g` output as samples: KEY=VALUE lines (CRLF), an empty line after each sample.

    Output arrives in chunks that may split a line or a sample; what is not yet a whole sample
    stays in `rest` (the page hands it back with its next poll, so the server keeps no state).
    """

    def __init__(self, rest: str = "") -> None:
        self.rest = rest[-65536:]

    def feed(self, chunks: Iterable[bytes | str]) -> list[dict[str, float]]:
        text = self.rest + "".join(c.decode("utf-8", "replace") if isinstance(c, bytes) else c
                                   for c in chunks)
        text = text.replace("\r\n", "\n")
        samples: list[dict[str, float]] = []
        *whole, self.rest = text.split("\n\n")
        for block in whole:
            sample = _sample(block)
            if sample:
                samples.append(sample)
        return samples


def _sample(block: str) -> dict[str, float]:
    sample: dict[str, float] = {}
    for line in block.split("\n"):
        key, sep, value = line.strip().partition("=")
        if not sep:
            continue
        try:
            number = float(value)
        except ValueError:
            continue
        if math.isfinite(number):
            sample[key] = number
    return sample


def live_points(samples: Sequence[Mapping[str, float]], *, now: float) -> dict[str, Any]:
    """Samples of one poll as aligned series, one second apart, the last one at `now`."""
    names = sorted({k for s in samples for k in s})
    n = len(samples)
    return {
        "names": names,
        "ts": [round(now - (n - 1 - i), 3) for i in range(n)],
        "values": [[s.get(name) for s in samples] for name in names],
    }


def pie_slices(rows: Iterable[tuple[str, float]], *, top: int = 12) -> list[tuple[str, float]]:
    """Label/value pairs summed by label, largest first; beyond `top` they become "other"."""
    totals: dict[str, float] = {}
    for label, value in rows:
        if value and value > 0:
            totals[label] = totals.get(label, 0.0) + float(value)
    ordered = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ordered) <= top:
        return ordered
    rest = sum(v for _, v in ordered[top - 1:])
    return ordered[:top - 1] + [("other", rest)]
