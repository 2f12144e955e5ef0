"""The node's SMTP listeners: one asyncio server per configured listener, sharing one intake."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.access.users import authenticate
from appliance.config.schema import Listener
from appliance.db.engine import Store
from appliance.policy.flow import Flow
from appliance.queue.intake import Intake
from appliance.smtp.fastinit import Members, introspect
from appliance.smtp.handler import Handler, Protocol
from appliance.smtp.phases import PhaseTimer
from appliance.tls import ensure_certificate, server_context

if TYPE_CHECKING:
    from appliance.wiring import Node

log = logging.getLogger(__name__)

IDENT = "ESMTP appliance"


class SmtpServer:
    """A node component: `await start()` binds every listener, `await stop()` closes them and
    lets the intake commit what it holds."""

    def __init__(self, *, store: Store, intake: Intake, listeners: list[Listener], hostname: str,
                 tls_dir: Path, flow: Flow, on_enqueued: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time, reuse_port: bool = False,
                 flow_threads: int = 8) -> None:
        self.store = store
        self.intake = intake
        self.listeners = listeners
        self.hostname = hostname
        self.tls_dir = tls_dir
        self.flow = flow
        self.on_enqueued = on_enqueued
        self.clock = clock
        self.reuse_port = reuse_port
        self.servers: dict[str, asyncio.AbstractServer] = {}
        self.phases: PhaseTimer | None = None  # set before start() to time each phase (bench)
        self._flow_thread_count = flow_threads
        self._flow_threads: ThreadPoolExecutor | None = None

    def port_of(self, listener_id: str) -> int:
        """The bound port of a listener (useful when configured with port 0)."""
        return int(self.servers[listener_id].sockets[0].getsockname()[1])

    async def start(self) -> None:
        # aiosmtpd logs every command line at INFO; the node logs one line per message instead.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        self.intake.start()
        self._flow_threads = ThreadPoolExecutor(self._flow_thread_count, thread_name_prefix="smtp-flow")
        loop = asyncio.get_running_loop()
        try:
            for listener in self.listeners:
                factory = self._factory(listener)
                server = await loop.create_server(
                    factory, host=listener.address, port=listener.port,
                    reuse_port=self.reuse_port or None, start_serving=True,
                )
                self.servers[listener.id] = server
                log.info("SMTP listener %s on %s:%d", listener.id, listener.address,
                         self.port_of(listener.id))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
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
            phases=self.phases,
            # A listener without a script runs the built-in DefaultFlow, which never blocks:
            # calling it inline spares a thread hand-off per stage.
            flow_threads=self._flow_threads if listener.script else None,
        )
        context = self._tls_context(listener) if listener.starttls else None
        excluded = [] if listener.auth else ["PLAIN", "LOGIN"]

        options = dict(
            data_size_limit=listener.max_message_size, enable_SMTPUTF8=True,
            hostname=self.hostname, ident=IDENT, tls_context=context,
            # With STARTTLS offered, credentials only travel encrypted (RFC 4954 §4).
            auth_require_tls=listener.starttls, auth_exclude_mechanism=excluded, timeout=300,
        )
        members: list[Members] = []  # filled by the first connection

        def make() -> Protocol:
            if members:
                return Protocol(handler, members=members[0], **options)
            proto = Protocol(handler, **options)
            members.append(introspect(proto))
            return proto

        return make

    def _tls_context(self, listener: Listener) -> ssl.SSLContext:
        if listener.tls_cert:
            return server_context(Path(listener.tls_cert), Path(listener.tls_key or listener.tls_cert))
        cert, key = ensure_certificate(self.tls_dir, self.hostname)
        return server_context(cert, key)

    async def _authenticate(self, name: str, password: str) -> bool:
        def check() -> bool:
            with self.store.transaction(read_only=True) as session:
                return authenticate(session, name, password) is not None

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


def component(node: Node) -> SmtpServer:
    """The SMTP part of a node (see appliance.wiring)."""
    config = node.config
    return SmtpServer(
        store=node.store, intake=Intake(node.store, node.spool), listeners=list(config.listeners),
        hostname=config.node.hostname, tls_dir=node.settings.tls_dir, flow=node.flow,
        on_enqueued=CoalescedKick(node.notify_enqueued),
    )
