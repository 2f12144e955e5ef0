"""Graph data for the console: a real rrdtool file read back, statd output split into samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import rrdtool

from appliance.console import series
from appliance.errors import InvalidInput


def _rrd(tmp_path: Path, *, start: int) -> bytes:
    path = tmp_path / "g.rrd"
    rrdtool.create(str(path), "--start", str(start), "--step", "60",
                   "DS:level:GAUGE:120:U:U", "DS:count:DERIVE:120:0:U",
                   "RRA:AVERAGE:0.5:1:1440", "RRA:AVERAGE:0.5:60:100")
    for i in range(1, 31):  # level i, the counter grows by 120 a minute (2 per second)
        rrdtool.update(str(path), f"{start + 60 * i}:{i}:{120 * i}")
    return path.read_bytes()


def test_rrd_bytes_become_aligned_series(tmp_path: Path) -> None:
    start = 1_700_000_000 - 1_700_000_000 % 3600
    data = series.read_rrd(_rrd(tmp_path, start=start), start=start, end=start + 1800)
    assert data.names == ["level", "count"]
    assert data.kinds == ["GAUGE", "DERIVE"]
    assert data.units == ["", "/min"]
    assert data.step == 60
    assert len(data.ts) == len(data.values[0]) == len(data.values[1])
    by_ts = dict(zip(data.ts, zip(*data.values)))
    level, per_minute = by_ts[start + 600]
    assert level == pytest.approx(10.0)
    assert per_minute == pytest.approx(120.0)  # 2/s shown per minute
    assert data.as_json()["names"] == ["level", "count"]


def test_long_ranges_use_a_coarser_archive(tmp_path: Path) -> None:
    start = 1_700_000_000 - 1_700_000_000 % 3600
    data = series.read_rrd(_rrd(tmp_path, start=start), start=start - 86400 * 3, end=start + 3600,
                           points=60)
    assert data.step == 3600


def test_bytes_that_are_no_rrd_are_refused() -> None:
    with pytest.raises(InvalidInput, match="rrdtool"):
        series.read_rrd(b"not an rrd file", start=0, end=100)
    with pytest.raises(InvalidInput):
        series.read_rrd(b"x", start=100, end=100)


def test_statd_chunks_split_anywhere() -> None:
    output = b"queue:active=3\r\nqueue:defer=1.50\r\n\r\nqueue:active=4\r\nqueue:defer=2\r\n\r\nqueue:act"
    stream = series.StatdStream()
    first = stream.feed([output[:20]])
    assert first == []
    samples = stream.feed([output[20:]])
    assert samples == [{"queue:active": 3.0, "queue:defer": 1.5}, {"queue:active": 4.0, "queue:defer": 2.0}]
    assert stream.rest == "queue:act"
    again = series.StatdStream(stream.rest)
    assert again.feed([b"ive=9\r\n\r\n"]) == [{"queue:active": 9.0}]


def test_live_points_are_one_second_apart() -> None:
    points = series.live_points([{"a": 1.0}, {"a": 2.0, "b": 5.0}], now=100.0)
    assert points == {"names": ["a", "b"], "ts": [99.0, 100.0], "values": [[1.0, 2.0], [None, 5.0]]}


def test_pie_slices_sum_sort_and_fold() -> None:
    rows = [("DELIVER", 5), ("REJECT", 2), ("DELIVER", 1), ("ERROR", 0)]
    assert series.pie_slices(rows) == [("DELIVER", 6.0), ("REJECT", 2.0)]
    many = [(f"k{i}", float(i)) for i in range(1, 6)]
    assert series.pie_slices(many, top=3) == [("k5", 5.0), ("k4", 4.0), ("other", 6.0)]


def test_ranges() -> None:
    assert series.time_range("1d", now=1000) == (1000 - 86400, 1000)
    with pytest.raises(InvalidInput):
        series.time_range("forever", now=0)
