"""The composition root: what each process of a node is made of, built in plain order.

`build_core()` makes what every process has (store, spool, the config it runs, the config
watcher and services, stats); one function per process role then builds that role's parts on
it and returns them as a frozen dataclass of typed fields:

    build_smtp(core, sockets) -> SmtpParts                # a receiver: `appliance smtp N`
    build_delivery(core) -> DeliveryParts                 # `appliance delivery`
    build_api(core) -> ApiParts                           # `appliance api`
    build_housekeeping(core) -> HousekeepingParts         # `appliance housekeeping`
    build_single(core) -> SingleParts                     # every part in one process

Each has `startables`: the parts with start()/stop() (plain or async), in start order;
`run()` starts them in that order and stops them in reverse.

Adding a part is one place in the build function of each role that runs it: construct it from
the typed parts above it (nothing is looked up by name), subscribe it to the config if it
follows revisions (`core.config.subscribe(part)`: `part.apply(old, new)`, raising refuses the
revision and the holder undoes the parts already switched), give it a field on that role's
dataclass if other code reaches it, and put it in `startables` where it must start, e.g. in
`build_delivery`:

    signer = Signer(core.store, core.config)      # a new part
    core.config.subscribe(signer)
    ... DeliveryParts(..., signer=signer, startables=(*core.startables, policy, signer, ...))
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.access.users import add_user, list_users
from appliance.alerts.runner import AlertRunner, build_alerts
from appliance.bounce.notices import BounceNotifier
from appliance.cluster.component import join_from_config, public_url
from appliance.cluster.configservice import ConfigService
from appliance.cluster.service import ClusterService
from appliance.cluster.shared import StoreRouter
from appliance.cluster.watcher import ConfigWatcher, initial_running
from appliance.commands.base import CommandContext
from appliance.commands.catalog import default_catalog
from appliance.commands.dnslookup import system_resolver
from appliance.commands.runner import Runner
from appliance.config.document import parse
from appliance.config.holder import ConfigHolder, Subscriber
from appliance.config.schema import Config
from appliance.db.engine import Store
from appliance.db.models import NodeInfo
from appliance.db.schema import ensure_schema
from appliance.delivery.service import DeliveryService
from appliance.mailauth.keys import KeyStore
from appliance.mailauth.sign import Signer
from appliance.mailauth.seal import Sealer
from appliance.mailauth.dns import system_lookup
from appliance.mailauth.forensic import ForensicReporter
from appliance.mailauth.reports import ReportSender
from appliance.nodelog import NodeLog, syslog_address
from appliance.policy.authflow import AuthenticatedData
from appliance.policy.component import PolicyComponent, node_functions
from appliance.process.roles import ListenerCheck
from appliance.process.wake import WakeListener, WakeSender, wake_path
from appliance.queue.intake import Intake
from appliance.queue.keeper import DrainRunner, TrashPurger, drain_runner
from appliance.queue.spool import Spool
from appliance.queue.store import release_all_leases
from appliance.queue.retention import TimelinePurge
from appliance.queue.sweep import SpoolSweeper
from appliance.settings import Settings
from appliance.smtp.server import CoalescedKick, SmtpServer
from appliance.soap.calls import NodeContext
from appliance.soap.auth import Authenticator
from appliance.soap.gateway import Gateway
from appliance.soap.server import Listen, SoapServer, local_url, throttle_policy, with_bound_ports
from appliance.stats.component import StatsComponent
from appliance.stats.metrics import Instruments
from appliance.stats.rates import Rates
from appliance.stats.remote import RateServer, RemoteRates, rates_path
from appliance.web.node import node_site
from appliance.web.site import Site

log = logging.getLogger(__name__)

ROLES = ("smtp", "delivery", "api", "housekeeping")


class Startable(Protocol):
    """A part with a life: `start`/`stop` may be plain or async methods.

    Async ones run on the process's event loop (SMTP, delivery). Blocking parts (a WSGI server,
    a flusher thread) start their own thread in `start()` and join it in `stop()`. `stop()`
    must be safe to call when `start()` failed half-way.
    """

    def start(self) -> object: ...
    def stop(self) -> object: ...


# -- what every process has -------------------------------------------------------------------
class NodeConfig:
    """The config this process runs: the holder's revision with the command-line flags
    (--smtp-listen, --relay) applied. Call it for the current one; parts that follow revisions
    `subscribe()` (the one way a config change reaches a part)."""

    def __init__(self, holder: ConfigHolder, settings: Settings) -> None:
        self.holder = holder
        self.settings = settings
        self._current = apply_overrides(holder.config, settings)
        holder.subscribe(_Follow(self))  # first: the parts after it see the new one

    def __call__(self) -> Config:
        return self._current

    def subscribe(self, part: Subscriber) -> None:
        """`part.apply(old, new)` on every config change, flags applied to both."""
        self.holder.subscribe(_Overridden(part, self.settings))

    @property
    def soap_listen(self) -> str:
        """The SOAP listen URL: flag, else config; https when no scheme is given."""
        text = self.settings.soap_listen or self._current.api.listen
        return text if "://" in text else f"https://{text}"


class _Follow:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config

    def apply(self, old: Config, new: Config) -> None:
        self.config._current = apply_overrides(new, self.config.settings)


class _Overridden:
    """A part's subscription, seeing configs as this node runs them (flags applied)."""

    def __init__(self, part: Subscriber, settings: Settings) -> None:
        self.part = part
        self.settings = settings

    def apply(self, old: Config, new: Config) -> None:
        self.part.apply(apply_overrides(old, self.settings), apply_overrides(new, self.settings))

    def __repr__(self) -> str:
        return f"{type(self.part).__name__}"


class Enqueued:
    """Who hears that this process queued new mail: delivery's kick in its own process, the
    wake-up datagram to the delivery process in the others. A startable (first): it learns the
    event loop, so that parts on other threads (scripts' mail(), SOAP retries) can notify."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def notify(self) -> None:
        for callback in self._callbacks:
            callback()

    def notify_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.notify)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    def stop(self) -> None:
        return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Core:
    """The parts every process of a node has, in their start order (`startables`)."""

    role: str  # "node" (everything in one process) or one of ROLES
    settings: Settings
    store: Store
    spool: Spool
    serial: str
    started: float
    config: NodeConfig
    enqueued: Enqueued
    router: StoreRouter
    watcher: ConfigWatcher
    config_service: ConfigService
    cluster_service: ClusterService
    stats: StatsComponent

    @property
    def startables(self) -> tuple[Startable, ...]:
        return (self.enqueued, self.watcher, self.stats)

    @property
    def leader(self) -> bool:
        """Speaks for the node: heartbeats, joining the cluster, owning rate() windows, graphs."""
        return self.role in ("node", "housekeeping")


def build_core(settings: Settings, *, role: str, store: Store, serial: str,
               announce: Callable[[str], None] = lambda _kind: None) -> Core:
    """`announce(kind)` tells the supervisor something ("config": a revision was committed
    here, so every process looks at once)."""
    router = StoreRouter(store)
    path = settings.config_path
    file_text = Path(path).read_text(encoding="utf-8") if path is not None else None
    running = initial_running(router, serial, file_text=file_text)
    holder = ConfigHolder(running)
    config = NodeConfig(holder, settings)
    leader = role in ("node", "housekeeping")

    def identity() -> tuple[str, str]:
        return holder.config.node.name, public_url(
            holder.config, data_dir=settings.data_dir, soap_listen=settings.soap_listen or "")

    # In a node of processes only housekeeping speaks for the node in the cluster (heartbeats,
    # last good revision, joining); the other children only follow the revisions.
    watcher = ConfigWatcher(router, holder, serial, identity=identity, clock=time.time,
                            follower=not leader)

    def committed() -> None:
        watcher.wake()
        announce("config")  # the other processes of the node look at once too

    config_service = ConfigService(router, serial, on_commit=committed)
    cluster_service = ClusterService(
        router, serial, identity, running_revision=lambda: holder.running.revision,
        stale_after=running.config.cluster.stale_after, on_change=watcher.wake)
    if leader:
        join_from_config(cluster_service, router, running.config.cluster.dsn)
    log.info("running config revision %d", running.revision)
    # One process owns the node's rate() windows (and graphs); the others ask it.
    rates: Rates | RemoteRates = Rates(store) if leader else \
        RemoteRates(rates_path(settings.data_dir))
    stats = StatsComponent(store, settings.rrd_dir, config(), rates=rates, graphs=leader)
    config.subscribe(stats)
    return Core(role=role, settings=settings, store=store, spool=Spool(settings.spool_dir),
                serial=serial, started=time.time(), config=config, enqueued=Enqueued(),
                router=router, watcher=watcher, config_service=config_service,
                cluster_service=cluster_service, stats=stats)


def build_policy(core: Core, metrics: Instruments) -> PolicyComponent:
    """The config's scripts as this process's Flow (SMTP sessions, delivery attempts, api-auth)."""
    functions = node_functions(store=core.store, spool=core.spool, config=core.config,
                               counters=core.stats.counters, rates=core.stats.rates,
                               on_enqueued=core.enqueued.notify_threadsafe)
    policy = PolicyComponent(functions, core.config(), metrics=metrics)
    core.config.subscribe(policy)
    return policy


# -- the roles --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class Parts:
    core: Core
    startables: tuple[Startable, ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SmtpParts(Parts):
    policy: PolicyComponent
    wake: WakeSender
    smtp: SmtpServer


def build_smtp(core: Core, sockets: dict[str, socket.socket]) -> SmtpParts:
    """A receiver accepting on the sockets its supervisor bound."""
    metrics = Instruments()
    policy = build_policy(core, metrics)
    wake = WakeSender(wake_path(core.settings.data_dir))  # every commit wakes delivery
    core.enqueued.subscribe(wake.wake)
    smtp = build_smtp_server(core, policy, metrics, sockets=sockets)
    return SmtpParts(core=core, policy=policy, wake=wake, smtp=smtp,
                     startables=(*core.startables, policy, wake, smtp))


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeliveryParts(Parts):
    policy: PolicyComponent
    delivery: DeliveryService
    wake: WakeListener


def build_delivery(core: Core) -> DeliveryParts:
    metrics = Instruments()
    policy = build_policy(core, metrics)
    delivery = build_delivery_service(core, policy, metrics)
    # each wake-up datagram runs the queue now instead of at the next poll
    wake = WakeListener(wake_path(core.settings.data_dir), core.enqueued.notify)
    return DeliveryParts(core=core, policy=policy, delivery=delivery, wake=wake,
                         startables=(*core.startables, policy, delivery, wake))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApiParts(Parts):
    policy: PolicyComponent
    wake: WakeSender
    commands: Runner
    soap: SoapServer


def build_api(core: Core) -> ApiParts:
    metrics = Instruments()
    policy = build_policy(core, metrics)
    wake = WakeSender(wake_path(core.settings.data_dir))  # retries and mail() wake delivery
    core.enqueued.subscribe(wake.wake)
    commands = build_commands(core)
    soap = build_soap_server(core, policy, commands)
    return ApiParts(core=core, policy=policy, wake=wake, commands=commands, soap=soap,
                    startables=(*core.startables, policy, wake, commands, soap))


@dataclasses.dataclass(frozen=True, kw_only=True)
class HousekeepingParts(Parts):
    rate_server: RateServer
    listener_check: ListenerCheck
    sweeper: SpoolSweeper
    alerts: AlertRunner
    timeline_purge: TimelinePurge
    dmarc_reports: ReportSender
    trash: TrashPurger
    drains: DrainRunner
    notices: BounceNotifier
    wake: WakeSender


def build_queue_keepers(core: Core) -> tuple[TrashPurger, DrainRunner, BounceNotifier]:
    """The trash purge (follows `queue.trash_hours`), the drain jobs' runner and the bounce
    notifier (DSNs owed by bulk bounces, naming the node's current host name)."""
    purger = TrashPurger(core.store, core.spool, hours=core.config().queue.trash_hours)
    core.config.subscribe(purger)
    drains = drain_runner(core.store, core.spool, kick=core.enqueued.notify_threadsafe)
    notices = BounceNotifier(core.store, core.spool, hostname=lambda: core.config().node.hostname,
                             kick=core.enqueued.notify_threadsafe)
    return purger, drains, notices


def build_housekeeping(core: Core) -> HousekeepingParts:
    """Stats flush and graphs, the config watcher that speaks for the node, the rate() owner,
    spool sweeps, saved queries' alerts, timeline retention, expired trash, drain jobs, the
    DSNs of bulk bounces."""
    rates = core.stats.rates
    assert isinstance(rates, Rates), "housekeeping owns the rate() windows"
    rate_server = RateServer(rates, rates_path(core.settings.data_dir))
    listener_check = ListenerCheck(core.settings.data_dir)
    core.config.subscribe(listener_check)
    sweeper = SpoolSweeper(core.store, core.spool, grace=core.settings.spool_grace)
    alerts = build_alerts(core.store, core.spool, core.config, on_enqueued=core.enqueued.notify_threadsafe)
    timeline_purge = TimelinePurge(core.store, config=core.config)
    trash, drains, notices = build_queue_keepers(core)
    wake = WakeSender(wake_path(core.settings.data_dir))
    core.enqueued.subscribe(wake.wake)
    dmarc_reports = build_dmarc_reports(core)
    return HousekeepingParts(
        core=core, rate_server=rate_server, listener_check=listener_check, sweeper=sweeper,
        alerts=alerts, timeline_purge=timeline_purge, dmarc_reports=dmarc_reports,
        trash=trash, drains=drains, notices=notices, wake=wake,
        startables=(*core.startables, rate_server, listener_check, sweeper, alerts,
                    timeline_purge, dmarc_reports, trash, drains, notices, wake))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SingleParts(Parts):
    nodelog: NodeLog
    policy: PolicyComponent
    smtp: SmtpServer
    delivery: DeliveryService
    sweeper: SpoolSweeper
    alerts: AlertRunner
    timeline_purge: TimelinePurge
    dmarc_reports: ReportSender
    trash: TrashPurger
    drains: DrainRunner
    notices: BounceNotifier
    commands: Runner
    soap: SoapServer


def build_single(core: Core) -> SingleParts:
    """Every part in this one process (benchmarks that time a node from inside): SMTP binds its
    own listeners, delivery is kicked directly."""
    nodelog = build_nodelog(core.settings, core.config())
    metrics = Instruments()
    policy = build_policy(core, metrics)
    smtp = build_smtp_server(core, policy, metrics, sockets=None)
    delivery = build_delivery_service(core, policy, metrics)
    sweeper = SpoolSweeper(core.store, core.spool, grace=core.settings.spool_grace)
    alerts = build_alerts(core.store, core.spool, core.config, on_enqueued=core.enqueued.notify_threadsafe)
    timeline_purge = TimelinePurge(core.store, config=core.config)
    dmarc_reports = build_dmarc_reports(core)
    trash, drains, notices = build_queue_keepers(core)
    commands = build_commands(core)
    soap = build_soap_server(core, policy, commands)
    return SingleParts(
        core=core, nodelog=nodelog, policy=policy, smtp=smtp, delivery=delivery,
        sweeper=sweeper, alerts=alerts, timeline_purge=timeline_purge,
        dmarc_reports=dmarc_reports, trash=trash, drains=drains, notices=notices,
        commands=commands, soap=soap,
        startables=(nodelog, *core.startables, policy, smtp, delivery, sweeper, alerts,
                    timeline_purge, dmarc_reports, trash, drains, notices, commands, soap))


def build_child(role: str, core: Core, sockets: dict[str, socket.socket]) -> Parts:
    if role == "smtp":
        return build_smtp(core, sockets)
    if role == "delivery":
        return build_delivery(core)
    if role == "api":
        return build_api(core)
    if role == "housekeeping":
        return build_housekeeping(core)
    raise ValueError(f"unknown child role {role!r}")


# -- the parts the roles share ----------------------------------------------------------------
def build_nodelog(settings: Settings, config: Config) -> NodeLog:
    """The node's log under `<data_dir>/log/` as the config's [log] section says; first to
    start, last to stop. Size and syslog changes take effect at the next start."""
    section = config.log
    return NodeLog(settings.log_dir, max_bytes=section.max_bytes,
                   backup_count=section.backup_count,
                   syslog_address=syslog_address(section.syslog), hostname=config.node.hostname,
                   line_format=section.format, stderr=section.stderr)


def build_smtp_server(core: Core, policy: PolicyComponent, metrics: Instruments, *,
                      sockets: dict[str, socket.socket] | None) -> SmtpServer:
    """`sockets`: bound by the supervisor (a receiver takes its share of the session caps);
    None binds the listeners itself."""
    config = core.config()
    receiver = sockets is not None
    # Inbound checks at DATA ([mailauth]); evaluations recorded for the DMARC reports, failures
    # reported to ruf= addresses where forensic_reports asks.
    forensic = ForensicReporter(core.store, core.spool, config=core.config,
                                on_enqueued=core.enqueued.notify_threadsafe)
    mailauth = AuthenticatedData(config, store=core.store, forensic=forensic)
    core.config.subscribe(mailauth)
    server = SmtpServer(
        store=core.store, intake=Intake(core.store, core.spool, metrics=metrics),
        listeners=list(config.listeners), metrics=metrics, hostname=config.node.hostname,
        tls_dir=core.settings.tls_dir, flow=policy,
        on_enqueued=CoalescedKick(core.enqueued.notify), sockets=sockets,
        processes=(config.smtp.processes or os.cpu_count() or 1) if receiver else 1,
        throttle=throttle_policy(config.api),  # AUTH failures, shared with the API
        mailauth=mailauth)
    core.config.subscribe(server)
    return server


def build_dmarc_reports(core: Core) -> ReportSender:
    """DMARC aggregate reports ([mailauth] aggregate_reports): once per period, queued here."""
    return ReportSender(core.store, core.spool, config=core.config, lookup=system_lookup,
                        on_enqueued=core.enqueued.notify_threadsafe)


def build_delivery_service(core: Core, policy: PolicyComponent,
                           metrics: Instruments) -> DeliveryService:
    """Queue manager and workers, kicked whenever this process queues mail."""
    keys = KeyStore(core.settings.dkim_key_dir)
    service = DeliveryService(store=core.store, spool=core.spool, config=core.config, flow=policy,
                              clock=time.time, metrics=metrics, signer=Signer(keys),
                              sealer=Sealer(keys))
    core.enqueued.subscribe(service.kick)
    core.config.subscribe(service)  # workers and connection limits follow revisions
    return service


def build_commands(core: Core) -> Runner:
    """commandRun's runner; statd reads the stats sampler."""
    context = CommandContext(log_dir=core.settings.log_dir, spool=core.spool, store=core.store,
                             resolver=system_resolver(), sampler=core.stats.sampler,
                             hostname=core.config().node.hostname)
    return Runner(default_catalog(), context)


def build_soap_server(core: Core, policy: PolicyComponent, commands: Runner) -> SoapServer:
    """SOAP at /remote/ with /healthz, /readyz and /metrics beside it."""
    from appliance.tls import ensure_certificate

    config = core.config()
    listen = Listen.parse(core.config.soap_listen)
    tls_files = None
    if listen.scheme == "https":
        if config.api.tls_cert and config.api.tls_key:
            tls_files = (Path(config.api.tls_cert), Path(config.api.tls_key))
        else:
            tls_files = ensure_certificate(core.settings.tls_dir, config.node.hostname)
    settings = core.settings
    context = NodeContext(
        store=core.store, spool=core.spool, serial=core.serial, hostname=config.node.hostname,
        started=core.started, kick_delivery=core.enqueued.notify_threadsafe,
        config_service=core.config_service, cluster_service=core.cluster_service,
        rates=core.stats.rates, rrd_dir=settings.rrd_dir, commands=commands,
        api_auth=lambda: policy.api_auth,
        config=lambda: with_bound_ports(core.config(), settings.data_dir),
        statement_timeout=config.api.statement_timeout,
        dkim_keys=KeyStore(settings.dkim_key_dir),
    )
    holder: list[SoapServer] = []

    def site(gateway: Gateway, auth: Authenticator) -> Site:
        console = None
        if config.console.enabled:
            console = build_console(core, gateway, auth, lambda: local_url(holder[0]), tls_files)
        return node_site(
            gateway, auth, store=core.store, data_dir=settings.data_dir,
            spool_dir=settings.spool_dir, config=core.config,
            config_applied=lambda: config_applied(core.config.holder, core.config_service),
            console=console)

    server = SoapServer(
        context, listen, public_url=config.api.public_url, tls_files=tls_files,
        max_request_bytes=config.api.max_request_bytes, throttle=throttle_policy(config.api),
        max_operation_bytes=config.api.max_operation_bytes,
        max_array_items=config.api.max_array_items,
        max_connections=config.api.max_connections,
        max_connections_per_address=config.api.max_connections_per_address,
        header_timeout=config.api.header_timeout,
        # read per request, so a config revision switches it without a restart
        wsdl_requires_auth=lambda: bool(core.config().api.wsdl_requires_auth),
        site=site)
    holder.append(server)
    return server


def build_console(core: Core, gateway: Gateway, auth: Authenticator, own_url: Callable[[], str],
                  tls_files: tuple[Path, Path] | None) -> Any:
    """The web console at / on the API listener, a client of this node's own SOAP endpoint."""
    from appliance.console.app import node_console

    section = core.config().console
    return node_console(
        authenticator=auth, mutating=gateway.mutating, own_url=own_url,
        own_name=lambda: str(core.config().node.name), own_serial=str(core.serial),
        own_ca_file=section.ca_file or (str(tls_files[0]) if tls_files else None),
        member_ca_file=section.ca_file or None, store=core.store, idle=section.session_idle)


def config_applied(holder: ConfigHolder, service: ConfigService) -> bool:
    """The newest committed revision is the one this process runs (a refused revision, or one
    not yet picked up, is not). Unknown while the config store is away: the node runs on its
    last good revision then, which is what it is meant to do."""
    try:
        newest = service.log(0, 1)
    except Exception:
        return True
    return not newest or newest[0].id == holder.running.revision


# -- running ----------------------------------------------------------------------------------
async def start(parts: Parts) -> None:
    for part in parts.startables:
        await _call(part.start)
        log.info("started %s", type(part).__name__)


async def stop(parts: Parts) -> None:
    for part in reversed(parts.startables):
        try:
            await _call(part.stop)
        except Exception:
            log.exception("stopping %s failed", type(part).__name__)
    parts.core.store.dispose()


async def run(parts: Parts, *, ready: Callable[[], None] | None = None) -> None:
    """Start everything, wait for SIGTERM/SIGINT, stop everything. SIGHUP: look at the config
    store now (the supervisor re-read the config file)."""
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    loop.add_signal_handler(signal.SIGHUP, parts.core.watcher.wake)
    try:
        await start(parts)
        log.info("node %s running", parts.core.serial)
        if ready is not None:
            ready()
        await done.wait()
        log.info("node %s stopping", parts.core.serial)
    finally:
        await stop(parts)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


async def _call(method: Callable[[], object]) -> None:
    result = method()
    if inspect.isawaitable(result):
        await result


# -- a node's store ---------------------------------------------------------------------------
def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
    return parse(Path(path).read_text(encoding="utf-8"))


def apply_overrides(config: Config, settings: Settings) -> Config:
    """Command-line flags win over the config document (--smtp-listen, --relay)."""
    if settings.smtp_listen is not None and config.listeners:
        host, port = settings.smtp_listen
        first = config.listeners[0].model_copy(update={"address": host, "port": port})
        config = config.model_copy(update={"listeners": [first, *config.listeners[1:]]})
    if settings.relay is not None and config.transports:
        ids = [t.id for t in config.transports]
        index = ids.index("default") if "default" in ids else 0
        nexthop = f"{settings.relay[0]}:{settings.relay[1]}"
        transports = list(config.transports)
        transports[index] = transports[index].model_copy(update={"nexthop": nexthop})
        config = config.model_copy(update={"transports": transports})
    return config


def prepare_store(settings: Settings, *extra_dirs: Path) -> tuple[Store, str, str | None]:
    """A node's first steps: directories, schema, serial, leases left by an earlier run, the
    first admin. Returns the store, the serial and a new admin password (None if there were
    users already)."""
    for path in (settings.data_dir, settings.spool_dir, settings.log_dir, settings.tls_dir,
                 *extra_dirs):
        path.mkdir(parents=True, exist_ok=True)
    store = Store(settings.database_url)
    ensure_schema(store.engine)
    with store.transaction() as session:
        serial = ensure_serial(session)
        released = release_all_leases(session)
        password = ensure_admin(session)
    if released:
        log.info("released %d leases left by a previous run", released)
    return store, serial, password


def ensure_serial(session: Session) -> str:
    """The node's serial, generated once and kept in node_info."""
    row = session.get(NodeInfo, "serial")
    if row is None:
        row = NodeInfo(key="serial", value=secrets.token_hex(8).upper())
        session.add(row)
        session.add(NodeInfo(key="first_start", value=repr(time.time())))
        session.flush()
    return str(row.value)


def ensure_admin(session: Session) -> str | None:
    """Create `admin` with a random password if there are no users; return that password."""
    if list_users(session):
        return None
    password = secrets.token_urlsafe(12)
    add_user(session, "admin", password, role="admin")
    return password


def read_serial(store: Store) -> str:
    with store.transaction(read_only=True) as session:
        return str(session.scalar(select(NodeInfo.value).where(NodeInfo.key == "serial")) or "")
