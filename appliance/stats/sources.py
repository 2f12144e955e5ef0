"""What graphs measure: built-in graphs, config-chosen counters, one Measurement per graph."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.db.engine import Store
from appliance.db.models_stats import RateHit, StatCounter
from appliance.queue.store import counts_by_state
from appliance.stats import proc as procfs
from appliance.stats.actions import ACTION_PREFIX
from appliance.stats.counters import sum_counts
from appliance.stats.patterns import match
from appliance.types import Action

GRAPH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,199}$")
# One DS per action, fixed at creation (RESTORE, which queues an entry again, is not graphed:
# graphs made before it existed have no DS for it).
ACTIONS = tuple(a.value.lower() for a in Action if a is not Action.RESTORE)


@dataclasses.dataclass(frozen=True)
class DataSource:
    name: str  # rrdtool DS name: 1-19 of [A-Za-z0-9_]
    kind: str  # GAUGE (a level) or DERIVE (a cumulative count; graphed as a rate)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Measurement:
    graph: str
    title: str
    label: str
    sources: tuple[DataSource, ...]
    values: dict[str, float]
    from_zero: bool = False  # a counter that started at 0 when its graph was created


@dataclasses.dataclass(frozen=True, kw_only=True)
class CounterGraph:
    """A counter (or a rate namespace) chosen in config to be graphed as `stat-<name>`."""

    name: str
    key1: str = ""
    key2: str = ""
    key3: str = ""
    rate_ns: str = ""  # when set: graph the hits inside the namespace's windows instead


@dataclasses.dataclass(frozen=True, kw_only=True)
class Probe:
    """Where measurements come from; the node wires the real ones."""

    store: Store | None = None
    proc: Path = Path("/proc")
    smtp_ports: tuple[int, ...] = ()
    counter_graphs: tuple[CounterGraph, ...] = ()


def _gauges(*names: str) -> tuple[DataSource, ...]:
    return tuple(DataSource(n, "GAUGE") for n in names)


def _derives(*names: str) -> tuple[DataSource, ...]:
    return tuple(DataSource(n, "DERIVE") for n in names)


def host_measurements(probe: Probe) -> list[Measurement]:
    out = [
        Measurement(graph="cpu", title="CPU time", label="ticks/s", sources=_derives("user", "system", "iowait", "idle"),
                    values=procfs.cpu_jiffies(probe.proc)),
        Measurement(graph="load", title="Load average", label="processes", sources=_gauges("load1", "load5", "load15"),
                    values=procfs.load_average(probe.proc)),
        Measurement(graph="smtp-connections", title="SMTP connections", label="connections",
                    sources=_gauges("connections"),
                    values={"connections": float(procfs.established_connections(probe.proc, probe.smtp_ports))}),
    ]
    for iface, values in sorted(procfs.interfaces(probe.proc).items()):
        out.append(Measurement(graph=f"net-{iface}", title=f"Interface {iface}", label="per second",
                               sources=_derives("rxbytes", "txbytes", "rxpackets", "txpackets"), values=values))
    return out


def store_measurements(session: Session, probe: Probe, *, now: float) -> list[Measurement]:
    counts = counts_by_state(session)
    out = [
        Measurement(graph="queue", title="Queue size by state", label="entries", sources=_gauges("active", "defer", "hold"),
                    values={k.lower(): float(v) for k, v in counts.items()}),
        Measurement(graph="delivery", title="Delivery rate", label="messages/s",
                    sources=_derives("deliver", "defer", "bounce", "error"), from_zero=True,
                    values={a: float(sum_counts(session, ACTION_PREFIX + a)) for a in ("deliver", "defer", "bounce", "error")}),
    ]
    out.extend(mail_stat_measurements(session))
    out.extend(counter_measurements(session, probe.counter_graphs, now=now))
    return out


def mail_stat_measurements(session: Session) -> list[Measurement]:
    """`mail-stat-<listener>-<domain>`: one DERIVE per action from the mail:action counters."""
    per_pair: dict[tuple[str, str], dict[str, float]] = {}
    rows = session.execute(
        select(StatCounter.key1, StatCounter.key2, StatCounter.key3, StatCounter.count)
        .where(StatCounter.key1.like(ACTION_PREFIX + "%"))
    )
    for key1, listener, domain, count in rows:
        action = key1[len(ACTION_PREFIX):]
        if action in ACTIONS:
            per_pair.setdefault((listener, domain), dict.fromkeys(ACTIONS, 0.0))[action] = float(count)
    out = []
    for (listener, domain), values in sorted(per_pair.items()):
        name = f"mail-stat-{listener}-{domain}"
        if GRAPH_NAME.match(name):
            out.append(Measurement(graph=name, title=f"Mail actions, {listener}, {domain}", label="actions/s",
                                   sources=_derives(*ACTIONS), values=values, from_zero=True))
    return out


def counter_measurements(session: Session, graphs: Sequence[CounterGraph], *, now: float) -> list[Measurement]:
    out = []
    for g in graphs:
        if g.rate_ns:
            live = session.scalar(
                select(func.count(RateHit.id)).where(match(RateHit.ns, g.rate_ns), RateHit.ts > now - RateHit.interval)
            )
            out.append(Measurement(graph=f"rate-{g.name}", title=f"rate() hits, {g.rate_ns}", label="hits in window",
                                   sources=_gauges("hits"), values={"hits": float(live or 0)}))
        else:
            total = sum_counts(session, g.key1, g.key2, g.key3)
            out.append(Measurement(graph=f"stat-{g.name}", title=f"stat {g.key1} {g.key2} {g.key3}".strip(),
                                   label="per second", sources=_derives("count"), values={"count": float(total)},
                                   from_zero=True))
    return out


def measure(probe: Probe, *, now: float, only: str | None = None) -> list[Measurement]:
    """Every graph's current values (or just graph `only`, when it is a host graph)."""
    out = host_measurements(probe)
    if only is not None and any(m.graph == only for m in out):
        return [m for m in out if m.graph == only]
    if probe.store is not None:
        with probe.store.transaction(read_only=True) as session:
            out.extend(store_measurements(session, probe, now=now))
    if only is not None:
        out = [m for m in out if m.graph == only]
    return out


_TITLES = {"cpu": "CPU time", "load": "Load average", "smtp-connections": "SMTP connections",
           "queue": "Queue size by state", "delivery": "Delivery rate"}


def describe(name: str) -> str:
    """A human title for a graph name (used by the PNG renderer)."""
    if name in _TITLES:
        return _TITLES[name]
    for prefix, title in (("mail-stat-", "Mail actions"), ("net-", "Interface"), ("stat-", "Counter"),
                          ("rate-", "rate() hits")):
        if name.startswith(prefix):
            return f"{title}: {name[len(prefix):]}"
    return name
