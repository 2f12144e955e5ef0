"""The node's SMTP listeners: one asyncio server per configured listener, sharing one intake."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from appliance.access import throttle as login_throttle
from appliance.access.throttle import ThrottlePolicy
from appliance.access.users import authenticate
from appliance.config.schema import Config, Listener
from appliance.connlimits import ConditionLog
from appliance.db.engine import Store
from appliance.policy.flow import Flow
from appliance.queue.intake import Intake
from appliance.smtp import replies
from appliance.stats.metrics import Instruments
from appliance.smtp.fastinit import Members, check_version, introspect
from appliance.smtp.handler import Handler, Protocol
from appliance.smtp.limits import SessionLimits, raise_descriptor_limit
from appliance.tls import ensure_certificate, server_context

log = logging.getLogger(__name__)

IDENT = "ESMTP appliance"


class SmtpServer:
    """A node component: `await start()` binds every listener, `await stop()` closes them and
    lets the intake commit what it holds."""

    def __init__(self, *, store: Store, intake: Intake, listeners: list[Listener], hostname: str,
                 tls_dir: Path, flow: Flow, on_enqueued: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time, reuse_port: bool = False,
                 flow_threads: int = 8, throttle: ThrottlePolicy = ThrottlePolicy(),
                 processes: int = 1, sockets: dict[str, socket.socket] | None = None,
                 metrics: Instruments | None = None) -> None:
        """`sockets`: listening sockets bound by the supervisor, by listener id; this server
        then accepts on them and leaves binding (and rebinding on change) to it."""
        self.store = store
        self.metrics = metrics
        self.intake = intake
        self.listeners = listeners
        self.hostname = hostname
        self.tls_dir = tls_dir
        self.flow = flow
        self.on_enqueued = on_enqueued
        self.clock = clock
        self.reuse_port = reuse_port
        self.sockets = sockets
        self.throttle = throttle  # AUTH failures, shared with the API through the store
        self.processes = processes  # receivers sharing each listener: each takes its share
        self._throttled = ConditionLog(log)
        self.servers: dict[str, asyncio.AbstractServer] = {}
        self._flow_thread_count = flow_threads
        self._flow_threads: ThreadPoolExecutor | None = None
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def apply(self, old: Config, new: Config) -> None:
        """appliance.config.holder.Subscriber: rebind changed listeners on the server's loop
        (called from the config watcher's thread); raising refuses the revision."""
        change = self.reconfigure(list(old.listeners), list(new.listeners),
                                  hostname=new.node.hostname)
        loop = self._loop
        if loop is None or loop.is_closed():
            asyncio.run(change)  # not started: reconfigure only records the settings
            return
        asyncio.run_coroutine_threadsafe(change, loop).result(timeout=30)

    def port_of(self, listener_id: str) -> int:
        """The bound port of a listener (useful when configured with port 0)."""
        server: Any = self.servers[listener_id]  # asyncio.Server: AbstractServer lacks .sockets
        return int(server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        check_version()
        self._loop = asyncio.get_running_loop()
        # aiosmtpd logs every command line at INFO; the node logs one line per message instead.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        raise_descriptor_limit()
        self.intake.start()
        self._flow_threads = ThreadPoolExecutor(self._flow_thread_count, thread_name_prefix="smtp-flow")
        try:
            for listener in self.listeners:
                if self.sockets is not None and listener.id not in self.sockets:
                    log.warning("SMTP listener %s has no socket from the supervisor", listener.id)
                    continue
                self.servers[listener.id] = await self._bind(listener)
        except BaseException:
            await self.stop()
            raise
        self._running = True

    async def reconfigure(self, old_listeners: list[Listener], new_listeners: list[Listener], *,
                          hostname: str | None = None) -> None:
        """Follow a config change: add, remove and rebind listeners whose settings changed (all
        of them when `hostname` changes). Sessions in progress finish on their old settings:
        closing a listening socket does not end the connections it accepted. If a new listener
        cannot bind, the ones closed are bound again and the error propagates."""
        if self.sockets is not None:
            # The supervisor binds the new sockets and starts receivers on them (this one
            # finishes its sessions and exits): nothing to change in place.
            return
        old_hostname = self.hostname
        rebuild_all = hostname is not None and hostname != old_hostname
        if not self._running:  # not started (or stopped): start() binds these
            self.listeners = list(new_listeners)
            self.hostname = hostname or self.hostname
            return
        before = {lst.id: lst for lst in old_listeners}
        after = {lst.id: lst for lst in new_listeners}
        gone = [i for i in before if rebuild_all or after.get(i) != before[i]]
        coming = [i for i in after if rebuild_all or before.get(i) != after[i]]
        closed = {i: self.servers.pop(i) for i in gone if i in self.servers}
        for server in closed.values():
            server.close()
        self.hostname = hostname or self.hostname
        opened: list[str] = []
        try:
            for listener_id in coming:
                self.servers[listener_id] = await self._bind(after[listener_id], change=True)
                opened.append(listener_id)
        except BaseException:
            for listener_id in opened:
                self.servers.pop(listener_id).close()
            self.hostname = old_hostname
            for listener_id in closed:
                try:
                    self.servers[listener_id] = await self._bind(before[listener_id])
                except OSError:
                    log.exception("could not rebind SMTP listener %s", listener_id)
            raise
        self.listeners = list(new_listeners)
        for listener_id in gone:
            if listener_id not in after:
                log.info("SMTP listener %s removed", listener_id)

    async def _bind(self, listener: Listener, *, change: bool = False) -> asyncio.AbstractServer:
        if self.sockets is not None:
            return await asyncio.get_running_loop().create_server(
                self._factory(listener), sock=self.sockets[listener.id], start_serving=True)
        server = await asyncio.get_running_loop().create_server(
            self._factory(listener), host=listener.address, port=listener.port,
            reuse_port=self.reuse_port or None, start_serving=True,
        )
        port = server.sockets[0].getsockname()[1]
        log.info("SMTP listener %s on %s:%d%s", listener.id, listener.address, port,
                 " (config change)" if change else "")
        return server

    async def stop(self) -> None:
        self._running = False
        for server in self.servers.values():
            server.close()
        for server in self.servers.values():
            try:
                await asyncio.wait_for(server.wait_closed(), timeout=5)
            except asyncio.TimeoutError:
                log.warning("SMTP sessions still open at shutdown")
        self.servers.clear()
        if self._flow_threads is not None:
            self._flow_threads.shutdown(wait=False, cancel_futures=True)
            self._flow_threads = None
        await asyncio.to_thread(self.intake.stop)

    def _factory(self, listener: Listener) -> Callable[[], Protocol]:
        handler = Handler(
            listener=listener, hostname=self.hostname, flow=self.flow, intake=self.intake,
            authenticate=self._authenticate, on_enqueued=self.on_enqueued, clock=self.clock,
            # A listener without a script runs the built-in DefaultFlow, which never blocks:
            # calling it inline spares a thread hand-off per stage.
            flow_threads=self._flow_threads if listener.script else None,
            metrics=self.metrics,
        )
        context = self._tls_context(listener) if listener.starttls else None
        excluded = [] if listener.auth else ["PLAIN", "LOGIN"]

        options: dict[str, Any] = dict(
            data_size_limit=listener.max_message_size, enable_SMTPUTF8=True,
            hostname=self.hostname, ident=IDENT, tls_context=context,
            # With STARTTLS offered, credentials only travel encrypted (RFC 4954 §4).
            auth_require_tls=listener.starttls, auth_exclude_mechanism=excluded, timeout=300,
        )
        members: list[Members] = []  # filled by the first connection
        limits = SessionLimits(
            name=listener.id, max_connections=listener.max_connections,
            per_address=listener.max_connections_per_address,
            pre_command_timeout=listener.pre_command_timeout, processes=self.processes)

        def make() -> Protocol:
            if members:
                proto = Protocol(handler, members=members[0], **options)
            else:
                proto = Protocol(handler, **options)
                members.append(introspect(proto))
            proto.limits = limits
            return proto

        return make

    def _tls_context(self, listener: Listener) -> ssl.SSLContext:
        if listener.tls_cert:
            return server_context(Path(listener.tls_cert), Path(listener.tls_key or listener.tls_cert))
        cert, key = ensure_certificate(self.tls_dir, self.hostname)
        return server_context(cert, key)

    async def _authenticate(self, name: str, password: str, address: str) -> bool | str:
        """The user table's answer, under the login throttle the API shares (per address and
        user, and per address; appliance.access.throttle): a blocked key is refused unchecked."""
        def check() -> bool | str:
            now = self.clock()
            with self.store.transaction(read_only=True) as session:
                if login_throttle.blocked_for(session, address=address, user=name, now=now):
                    self._throttled.note("SMTP AUTH refused unchecked after repeated failures",
                                         f"{name!r} from [{address}]")
                    return replies.AUTH_THROTTLED
                ok = authenticate(session, name, password) is not None
                counted = ok and login_throttle.has_failures(session, address=address, user=name)
            if not ok:
                with self.store.transaction() as session:
                    login_throttle.record_failure(session, address=address, user=name,
                                                  protocol="smtp", policy=self.throttle, now=now)
            elif counted:
                with self.store.transaction() as session:
                    login_throttle.record_success(session, address=address, user=name)
            return ok

        try:
            return await asyncio.to_thread(check)
        except Exception as exc:
            log.error("SMTP AUTH check failed: %s", exc)
            return False


class CoalescedKick:
    """Calls `kick` at most once per `delay` seconds however many messages were queued.

    Each kick makes delivery claim entries in a write transaction; claiming after a short pause
    takes many entries at once instead of contending with every single intake commit.
    """

    def __init__(self, kick: Callable[[], None], *, delay: float = 0.05) -> None:
        self._kick = kick
        self._delay = delay
        self._pending = False

    def __call__(self) -> None:
        if self._pending:
            return
        self._pending = True
        asyncio.get_running_loop().call_later(self._delay, self._fire)

    def _fire(self) -> None:
        self._pending = False
        self._kick()

