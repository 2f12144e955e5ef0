"""Prometheus series of a node: instruments its processes update, and store figures read per scrape.

Several processes update the same instruments, so they run in prometheus_client's multiprocess
mode: `prepare_multiprocess()` (the supervisor, before any child starts) points
PROMETHEUS_MULTIPROC_DIR at an empty folder of the data dir; every process then writes its
values to memory-mapped files there, and a scrape sums them (`exposition`). The mode is chosen
when prometheus_client is imported, so this module imports it only inside functions.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.db.models_bounce import BounceNotice
from appliance.db.models_stats import RateHit, StatCounter

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
ACTION_PREFIX = "mail:action:"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
QUEUE_BUCKETS = (1, 5, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 5 * 86400)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
FSYNC_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


def prepare_multiprocess(folder: Path) -> Path:
    """Empty `folder` and make it this process's (and its children's) multiprocess folder."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def process_exited(pid: int) -> None:
    """The supervisor saw a child end: its live gauges no longer count."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class Instruments:
    """The counters and histograms a process updates (one set per process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.registry = reg
        self.delivery_attempts = Counter(
            "appliance_delivery_attempts", "Delivery attempts by transport and reply class "
            "(2xx, 4xx, 5xx, or error when no reply came)", ["transport", "reply_class"],
            registry=reg)
        self.delivery_seconds = Histogram(
            "appliance_delivery_seconds", "Time spent delivering one message", ["transport"],
            buckets=LATENCY_BUCKETS, registry=reg)
        self.time_in_queue = Histogram(
            "appliance_time_in_queue_seconds", "Seconds from reception to the final action",
            ["action"], buckets=QUEUE_BUCKETS, registry=reg)
        self.smtp_sessions = Counter(
            "appliance_smtp_sessions", "SMTP sessions accepted", ["listener"], registry=reg)
        self.smtp_rejects = Counter(
            "appliance_smtp_rejects", "SMTP commands refused, by reason", ["listener", "reason"],
            registry=reg)
        self.policy_runs = Counter(
            "appliance_policy_runs", "Policy script runs by flow stage", ["stage"], registry=reg)
        self.policy_errors = Counter(
            "appliance_policy_errors", "Policy script runs that failed", ["stage"], registry=reg)
        self.policy_seconds = Histogram(
            "appliance_policy_seconds", "Time of one policy script run", ["stage"],
            buckets=LATENCY_BUCKETS, registry=reg)
        self.intake_batch = Histogram(
            "appliance_intake_batch_messages", "Messages per group commit", buckets=BATCH_BUCKETS,
            registry=reg)
        self.spool_fsync_seconds = Histogram(
            "appliance_spool_fsync_seconds", "Time to write and fsync one spool body",
            buckets=FSYNC_BUCKETS, registry=reg)
        self.store_errors = Counter(
            "appliance_store_errors", "Store operations that failed", ["process"], registry=reg)
        self.process_restarts = Counter(
            "appliance_process_restarts", "Children the supervisor started again", ["role"],
            registry=reg)


def reply_class(code: int | None) -> str:
    return f"{code // 100}xx" if code is not None and 200 <= code < 600 else "error"


class StoreCollector:
    """Series read from the store at scrape time: the same figures on every process's behalf."""

    def __init__(self, store: Store, *, top_domains: int = 20,
                 live_rates: Callable[[], list[Any]] | None = None) -> None:
        self.store = store
        self.top_domains = top_domains
        self.live_rates = live_rates

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self.store.transaction(read_only=True) as session:
            by_state = session.execute(
                select(QueueEntry.state, QueueEntry.transport, func.count())
                .group_by(QueueEntry.state, QueueEntry.transport)).all()
            domains = session.execute(
                select(QueueEntry.rcpt_domain, func.count()).group_by(QueueEntry.rcpt_domain)
                .order_by(func.count().desc(), QueueEntry.rcpt_domain)
                .limit(self.top_domains)).all()
            counters = session.execute(
                select(StatCounter.key1, StatCounter.key2, StatCounter.key3,
                       StatCounter.count)).all()
            rates = session.execute(
                select(RateHit.ns, RateHit.entry, RateHit.interval, func.count())
                .group_by(RateHit.ns, RateHit.entry, RateHit.interval)).all()
            owed = session.scalar(select(func.count()).select_from(BounceNotice))
        entries = GaugeMetricFamily("appliance_queue_entries", "Queue entries by state and transport",
                                    labels=["queue", "transport"])
        seen = set()
        for state, transport, count in by_state:
            entries.add_metric([state, transport], count)
            seen.add(state)
        for state in {"ACTIVE", "DEFER", "HOLD"} - seen:
            entries.add_metric([state, ""], 0)
        yield entries
        top = GaugeMetricFamily("appliance_queue_domain_entries",
                                f"Queue entries of the {self.top_domains} largest recipient domains",
                                labels=["domain"])
        for domain, count in domains:
            top.add_metric([domain], count)
        yield top
        actions = CounterMetricFamily("appliance_messages", "Final actions (mail:action counters)",
                                      labels=["action"])
        stats = CounterMetricFamily("appliance_stat", "Every stat() counter",
                                    labels=["key1", "key2", "key3"])
        totals: dict[str, int] = {}
        for key1, key2, key3, count in counters:
            stats.add_metric([key1, key2, key3], count)
            if key1.startswith(ACTION_PREFIX):
                action = key1.removeprefix(ACTION_PREFIX).upper()
                totals[action] = totals.get(action, 0) + count
        for action, count in sorted(totals.items()):
            actions.add_metric([action], count)
        yield actions
        yield stats
        buckets = GaugeMetricFamily("appliance_rate_hits", "rate() hits inside their window",
                                    labels=["ns", "entry", "interval"])
        for ns, entry, interval, count in rates:
            buckets.add_metric([ns, entry, str(interval)], count)
        yield buckets
        yield GaugeMetricFamily("appliance_bounce_notices",
                                "Bulk-bounced messages whose DSN is still to be written",
                                value=int(owed or 0))


def exposition(store: Store, *, top_domains: int = 20,
               extra: CollectorRegistry | None = None) -> bytes:
    """The text format of one scrape: the store's series and every process's instruments."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, top_domains=top_domains))  # type: ignore[arg-type]
    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=folder)
    text = bytes(generate_latest(registry))
    if not folder and extra is not None:  # one process: its own instruments, from their registry
        text += bytes(generate_latest(extra))
    return text
