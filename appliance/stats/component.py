"""The node's statistics part: counters, rates, flusher, graph updater and sampler, as one component."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from appliance.config.schema import Config
from appliance.db.engine import Store
from appliance.stats.counters import Counters
from appliance.stats.flusher import StatsFlusher
from appliance.stats.rates import Rates
from appliance.stats.remote import RemoteRates
from appliance.stats.sampler import Sampler
from appliance.stats.sources import CounterGraph, Probe
from appliance.stats.updater import GraphUpdater


def probe_for(store: Store, config: Config, *, proc: Path = Path("/proc")) -> Probe:
    return Probe(
        store=store, proc=proc,
        smtp_ports=tuple(sorted({listener.port for listener in config.listeners})),
        counter_graphs=tuple(
            CounterGraph(name=g.name, key1=g.key1, key2=g.key2, key3=g.key3, rate_ns=g.rate_ns)
            for g in config.stats.graphs
        ),
    )


class StatsComponent:
    """start()/stop() run the flusher and graph updater threads; `stat`, `rate`, `sampler` are
    what policy scripts and commands call. `rates` holds the live rate() windows (loaded from the
    store here; the flusher writes new hits behind): hslRate should read `rates.list()`."""

    def __init__(self, store: Store, rrd_dir: Path, config: Config, *,
                 clock: Callable[[], float] = time.time, rates: Rates | RemoteRates | None = None,
                 graphs: bool = True) -> None:
        """`rates`: the node's rate() windows, owned here (`Rates`, flushed by this process;
        made here when None) or in another process (`RemoteRates`: this one asks it, and its
        flusher writes only this process's stat() batch); `graphs`: run the graph updater."""
        self.store = store
        self.rrd_dir = rrd_dir
        self.counters = Counters()
        own = rates if isinstance(rates, Rates) else Rates(store, clock=clock) if rates is None \
            else None
        self.rates: Rates | RemoteRates = own if own is not None else rates  # type: ignore[assignment]
        self.stat = self.counters.stat
        self.rate = self.rates.rate
        probe = probe_for(store, config)
        self.flusher = StatsFlusher(store, self.counters, interval=config.stats.flush_interval,
                                    rates=own, clock=clock)
        self.graphs = graphs
        self.updater = GraphUpdater(rrd_dir, probe, interval=config.stats.graph_interval,
                                    step=config.stats.rrd_step, clock=clock)
        self.sampler = Sampler(probe, storage=rrd_dir)

    def apply(self, old: Config, new: Config) -> None:
        """appliance.config.holder.Subscriber."""
        self.on_config(new)

    def on_config(self, config: Config) -> None:
        """Intervals and graphed counters follow the config; the RRD step applies to new files."""
        probe = probe_for(self.store, config)
        self.flusher.interval = config.stats.flush_interval
        self.updater.interval = config.stats.graph_interval
        self.updater.probe = probe
        self.sampler.probe = probe

    def start(self) -> None:
        self.rrd_dir.mkdir(parents=True, exist_ok=True)
        self.flusher.start()
        if self.graphs:
            self.updater.start()

    def stop(self) -> None:
        if self.graphs:
            self.updater.stop()
        self.flusher.stop()
        if isinstance(self.rates, RemoteRates):
            self.rates.close()

