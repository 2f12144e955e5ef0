"""Graph updates from the store (SQLite and PostgreSQL) into real RRD files, read back with rrdtool."""

from __future__ import annotations

import uuid
from pathlib import Path

import rrdtool

from appliance.db.engine import Store
from appliance.queue.store import claim, enqueue, record_delivered
from appliance.stats import rrd
from appliance.stats.counters import Counters
from appliance.stats.flusher import StatsFlusher
from appliance.stats.rates import Rates
from appliance.stats.sources import CounterGraph, Probe
from appliance.stats.updater import GraphUpdater
from appliance.types import Envelope, NewMessage
from tests.unit.stats.test_sources import fake_proc

T0 = 1_700_000_040  # a multiple of the 60 s step: each update closes exactly one row


def _deliver(store: Store, *rcpts: str) -> None:
    msg = NewMessage(msgid=str(uuid.uuid4()), envelope=Envelope(sender="s@x.example", recipients=rcpts, listener="in"),
                     path="p", size=1, received=1.0)
    with store.transaction() as s:
        enqueue(s, msg, now=1.0)
        for e in claim(s, owner="w", now=2.0, lease=60, limit=100):
            record_delivered(s, e.id, owner="w", now=3.0, transfertime=0.1)


def _sum(path: Path, ds: str, start: int, end: int) -> float:
    (_, _, step), names, rows = rrdtool.fetch(str(path), "AVERAGE", "-r", "60", "-s", str(start), "-e", str(end))
    return sum((r[names.index(ds)] or 0.0) * step for r in rows)


def test_actions_and_config_counters_become_graphs(store: Store, tmp_path: Path) -> None:
    clock = [float(T0 - 10)]
    counters = Counters()
    rates = Rates(store, clock=lambda: clock[0])
    flusher = StatsFlusher(store, counters, rates=rates, clock=lambda: clock[0])
    probe = Probe(store=store, proc=fake_proc(tmp_path / "proc", user=1, rx=1),
                  counter_graphs=(CounterGraph(name="spam", key1="spam:%"), CounterGraph(name="out", rate_ns="outbound")))
    updater = GraphUpdater(tmp_path / "rrd", probe, interval=60, step=60, clock=lambda: clock[0])

    _deliver(store, "a@d.example", "b@d.example")
    counters.stat("spam:hit", "x", n=3)
    assert [rates.rate("outbound", e, 5, 3600) for e in ("u1", "u1", "u2")] == [True, True, True]
    rates.rate("outbound", "u3", 1, 10)  # leaves its window before the first update below
    clock[0] += 10
    flusher.flush_once()
    assert updater.update_once() >= 6
    clock[0] += 60
    _deliver(store, "c@d.example")
    counters.stat("spam:hit", "y", n=2)
    flusher.flush_once()
    updater.update_once()
    assert updater.update_once() == 0  # same second: nothing written twice

    rrd_dir = tmp_path / "rrd"
    names = rrd.graph_list(rrd_dir)
    assert {"mail-stat-in-d.example", "queue", "delivery", "stat-spam", "cpu", "load", "net-eth0",
            "smtp-connections"} <= set(names)
    end = T0 + 60
    assert _sum(rrd_dir / "mail-stat-in-d.example.rrd", "deliver", T0 - 120, end) == 3.0
    assert _sum(rrd_dir / "mail-stat-in-d.example.rrd", "bounce", T0 - 120, end) == 0.0
    assert _sum(rrd_dir / "delivery.rrd", "deliver", T0 - 120, end) == 3.0
    assert _sum(rrd_dir / "stat-spam.rrd", "count", T0 - 120, end) == 5.0
    (_, _, _), _, rows = rrdtool.fetch(str(rrd_dir / "rate-out.rrd"), "AVERAGE", "-r", "60", "-s", str(T0 - 60), "-e", str(T0))
    assert rows[-1] == (3.0,)  # live hits in the namespace's windows

    raw = rrd.graph_file(rrd_dir, "stat-spam")
    assert raw == (rrd_dir / "stat-spam.rrd").read_bytes() and raw[:3] == b"RRD"
    out = tmp_path / "spam.png"
    rrd.render_png(rrd_dir, "mail-stat-in-d.example", out, start=T0 - 3600, end=T0 + 60)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
