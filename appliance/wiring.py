"""The one composition module: builds a node's store, spool, config and components, runs them."""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
import secrets
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select

from appliance.access.users import add_user, list_users
from appliance.config.document import parse
from appliance.config.holder import ConfigHolder, Subscriber
from appliance.config.schema import Config
from appliance.db.engine import Store
from appliance.db.models import NodeInfo
from appliance.db.schema import ensure_schema
from appliance.policy.flow import DefaultFlow, Flow
from appliance.queue.spool import Spool
from appliance.queue.store import release_all_leases
from appliance.settings import Settings

if TYPE_CHECKING:
    from appliance.stats.metrics import Instruments

log = logging.getLogger(__name__)

# Each entry names a factory `f(node: Node) -> Component`, imported only when the node starts.
# To plug in a part, add ONE line here (order = start order; stop runs in reverse).
COMPONENT_FACTORIES: tuple[str, ...] = (
    "appliance.nodelog:component",  # first to start, last to stop: every other part logs to it
    "appliance.cluster.component:component",  # first: the others read node.config when built
    "appliance.stats.component:component",  # before policy/commands/SOAP: sets node.stats
    "appliance.policy.component:component",  # sets node.flow from the config's scripts
    "appliance.smtp.server:component",
    "appliance.wiring:delivery_component",
    "appliance.queue.sweep:component",  # spool repair at start and hourly (housekeeping)
    "appliance.queue.keeper:trash_purger",  # expired trash (housekeeping)
    "appliance.queue.keeper:drain_runner",  # throttled drain jobs (housekeeping)
    "appliance.commands.component:component",  # after stats (statd's sampler); sets node.commands
    "appliance.soap.server:component",
)


class Component(Protocol):
    """A part of the running node. `start`/`stop` may be plain or async methods.

    Async ones run on the node's event loop (SMTP, delivery). Blocking parts (a WSGI server, a
    flusher thread) start their own thread in `start()` and join it in `stop()`; a plain method
    that blocks for long must hand off to a thread itself. `stop()` must be safe to call when
    `start()` failed half-way.
    """

    def start(self) -> Any: ...
    def stop(self) -> Any: ...


class Node:
    """One running node.

    How a part plugs in: write `def component(node: Node) -> Component` in your module and add
    `"your.module:component"` to COMPONENT_FACTORIES above. The factory runs after the store is
    upgraded and before any component starts, so it may:

    - read `node.settings`, `node.store`, `node.spool`, `node.serial`, `node.config` (current),
      `node.config_provider` (a callable to hand to long-lived parts), `node.soap_listen`;
    - delivery: `node.on_enqueued(callback)` is called after SMTP commits new entries;
    - policy: `node.set_flow(flow)` — every SMTP session and delivery attempt after that uses it
      (`node.flow` is a proxy that always calls the current one, so hand that out);
    - config watcher: `node.set_config(config)` swaps the running config (flag overrides are
      re-applied) and calls every callback registered with `node.on_config_change(cb)`;
    - node log / stats flusher / SOAP server: plain components with start/stop; the event loop
      is `node.loop` once running (use `asyncio.run_coroutine_threadsafe` from threads).
    """

    def __init__(self, settings: Settings, *, config: Config | None = None,
                 factories: tuple[str, ...] | None = None, role: str = "node") -> None:
        self.settings = settings
        # "node": everything in this one process; else one child of appliance.process.
        self.role = role
        self.listen_sockets: dict[str, socket.socket] = {}  # inherited from the supervisor
        self._base_config = config if config is not None else load_config(settings.config_path)
        self.config = apply_overrides(self._base_config, settings)
        self._flow: Flow = DefaultFlow()
        self.flow: Flow = _FlowProxy(lambda: self._flow)  # type: ignore[assignment]
        self._factories = COMPONENT_FACTORIES if factories is None else factories
        self.config_holder: ConfigHolder | None = None
        self._enqueue_callbacks: list[Callable[[], None]] = []
        self.components: list[Component] = []
        self.started = time.time()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.store: Store
        self.spool: Spool
        self.serial = ""
        self._config_changed: list[Callable[[], None]] = []
        # Tells the supervisor something ("config": a revision was committed here).
        self.announce: Callable[[str], None] = lambda _kind: None

    @functools.cached_property
    def metrics(self) -> Instruments:
        """This process's instruments (one set, shared by its parts). Made on first use: in a
        node of processes the supervisor has chosen prometheus_client's multiprocess mode by
        then, which is fixed when that library is imported."""
        from appliance.stats.metrics import Instruments

        return Instruments()

    # -- what components use -------------------------------------------------------------
    def config_provider(self) -> Config:
        return self.config

    def set_config(self, config: Config) -> None:
        self._base_config = config
        self.config = apply_overrides(config, self.settings)

    def follow(self, holder: ConfigHolder) -> None:
        """Run `holder`'s config from now on: `node.config` follows each revision it applies,
        and parts that `subscribe()` get each change (the one way a change reaches a part)."""
        self.config_holder = holder
        self.set_config(holder.config)
        holder.subscribe(_NodeFollows(self))

    def subscribe(self, part: Subscriber) -> None:
        """`part.apply(old, new)` on every config change, with this node's flag overrides in
        both; raising refuses the change (the holder undoes the parts already switched)."""
        if self.config_holder is not None:
            self.config_holder.subscribe(_Overridden(part, self.settings))

    def on_config_changed(self, callback: Callable[[], None]) -> None:
        """Call `callback` when told the config store changed (SIGHUP in a child)."""
        self._config_changed.append(callback)

    def config_changed(self) -> None:
        for callback in self._config_changed:
            callback()

    def on_enqueued(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the event loop) whenever SMTP has queued new entries."""
        self._enqueue_callbacks.append(callback)

    def notify_enqueued(self) -> None:
        for callback in self._enqueue_callbacks:
            callback()

    def set_flow(self, flow: Flow) -> None:
        self._flow = flow

    @property
    def soap_listen(self) -> str:
        """The SOAP listen URL: flag, else config; https when no scheme is given."""
        text = self.settings.soap_listen or self.config.api.listen
        return text if "://" in text else f"https://{text}"

    # -- life cycle ----------------------------------------------------------------------
    def prepare(self) -> str | None:
        """Directories, schema, serial, stale leases, first admin. Returns a new admin password."""
        self.store, self.serial, password = prepare_store(self.settings)
        self.spool = Spool(self.settings.spool_dir)
        built = (_load(name)(self) for name in self._factories)
        self.components = [c for c in built if c is not None]
        return password

    def attach(self) -> None:
        """A child's prepare(): the supervisor made the store, serial and admin already."""
        self.store = Store(self.settings.database_url)
        self.spool = Spool(self.settings.spool_dir)
        self.serial = read_serial(self.store)
        built = (_load(name)(self) for name in self._factories)
        self.components = [c for c in built if c is not None]

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        for component in self.components:
            await _call(component.start)
            log.info("started %s", type(component).__name__)

    async def stop(self) -> None:
        for component in reversed(self.components):
            try:
                await _call(component.stop)
            except Exception:
                log.exception("stopping %s failed", type(component).__name__)
        if hasattr(self, "store"):
            self.store.dispose()

    async def run(self, *, ready: Callable[[], None] | None = None) -> None:
        """Start everything, wait for SIGTERM/SIGINT, stop everything."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
            log.info("node %s running", self.serial)
            if ready is not None:
                ready()
            await stop.wait()
            log.info("node %s stopping", self.serial)
        finally:
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


class _NodeFollows:
    def __init__(self, node: Node) -> None:
        self.node = node

    def apply(self, old: Config, new: Config) -> None:
        self.node.set_config(new)


class _Overridden:
    """A part's subscription, seeing configs as this node runs them (flags applied)."""

    def __init__(self, part: Subscriber, settings: Settings) -> None:
        self.part = part
        self.settings = settings

    def apply(self, old: Config, new: Config) -> None:
        self.part.apply(apply_overrides(old, self.settings), apply_overrides(new, self.settings))

    def __repr__(self) -> str:
        return f"{type(self.part).__name__}"


class _FlowProxy:
    """Forwards every Flow call to the flow current at call time."""

    def __init__(self, current: Callable[[], Flow]) -> None:
        self._current = current

    def __getattr__(self, name: str) -> Any:
        return getattr(self._current(), name)


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


def ensure_serial(session: Any) -> str:
    """The node's serial, generated once and kept in node_info."""
    row = session.get(NodeInfo, "serial")
    if row is None:
        row = NodeInfo(key="serial", value=secrets.token_hex(8).upper())
        session.add(row)
        session.add(NodeInfo(key="first_start", value=repr(time.time())))
        session.flush()
    return str(row.value)


def ensure_admin(session: Any) -> str | None:
    """Create `admin` with a random password if there are no users; return that password."""
    if list_users(session):
        return None
    password = secrets.token_urlsafe(12)
    add_user(session, "admin", password, role="admin")
    return password


def read_serial(store: Store) -> str:
    with store.transaction(read_only=True) as session:
        return str(session.scalar(select(NodeInfo.value).where(NodeInfo.key == "serial")) or "")


def delivery_component(node: Node) -> Component:
    """The delivery service (appliance.delivery), kicked whenever SMTP queues mail."""
    from appliance.delivery.service import DeliveryService

    service = DeliveryService(
        store=node.store, spool=node.spool, config=node.config_provider, flow=node.flow,
        clock=time.time, metrics=node.metrics,
    )
    node.on_enqueued(service.kick)
    node.subscribe(service)  # workers and connection limits follow revisions
    return service


def _load(spec: str) -> Callable[[Node], Component | None]:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


async def _call(method: Callable[[], Any]) -> None:
    result = method()
    if inspect.isawaitable(result):
        await result
