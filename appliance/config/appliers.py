"""Subscribers that carry a new Config into the running node's parts (see holder.Subscriber)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from appliance.config.schema import Config, Listener

log = logging.getLogger(__name__)


class NodeLike(Protocol):
    """The part of appliance.wiring.Node this module uses (config must not import wiring)."""

    config: Config
    components: list[Any]
    loop: asyncio.AbstractEventLoop | None

    def set_config(self, config: Config) -> None: ...


class NodeConfig:
    """Swaps the node's config (its flag overrides re-applied) and restarts changed listeners.

    Parts that read `node.config_provider()` (delivery: transports, queue settings) follow at
    their next use; parts registered with `node.on_config_change` are called by the node.
    """

    def __init__(self, node: NodeLike) -> None:
        self.node = node

    def apply(self, old: Config, new: Config) -> None:
        before = self.node.config
        self.node.set_config(new)
        try:
            for listeners in self._listener_parts():
                listeners.apply(before, self.node.config)
        except Exception:
            self.node.set_config(old)
            raise

    def _listener_parts(self) -> list["SmtpListeners"]:
        loop = self.node.loop
        return [SmtpListeners(c, loop) for c in self.node.components if _serves_listeners(c)]


def _serves_listeners(component: Any) -> bool:
    return isinstance(getattr(component, "servers", None), dict) and hasattr(component, "_factory")


class SmtpListeners:
    """Adds, removes and rebinds SMTP listeners of a running appliance.smtp.server.SmtpServer.

    SmtpServer has no public way to change its listeners, so this drives its `servers` map and
    its per-listener protocol factory. Closing a listening socket does not end the sessions it
    accepted (asyncio.Server.close), so they finish on the old settings.
    """

    def __init__(self, server: Any, loop: asyncio.AbstractEventLoop | None,
                 timeout: float = 30.0) -> None:
        self.server = server
        self.loop = loop
        self.timeout = timeout

    def apply(self, old: Config, new: Config) -> None:
        if self.loop is None or self.loop.is_closed() or not self.server.servers:
            self.server.listeners = list(new.listeners)  # not started: it binds these later
            self.server.hostname = new.node.hostname
            return
        future = asyncio.run_coroutine_threadsafe(self._switch(old, new), self.loop)
        future.result(timeout=self.timeout)

    async def _switch(self, old: Config, new: Config) -> None:
        rebuild_all = old.node.hostname != new.node.hostname
        before = {lst.id: lst for lst in old.listeners}
        after = {lst.id: lst for lst in new.listeners}
        gone = [i for i in before if rebuild_all or after.get(i) != before[i]]
        coming = [i for i in after if rebuild_all or before.get(i) != after[i]]
        closed = {i: self.server.servers.pop(i) for i in gone if i in self.server.servers}
        for server in closed.values():
            server.close()
        self.server.hostname = new.node.hostname
        opened: list[str] = []
        try:
            for listener_id in coming:
                self.server.servers[listener_id] = await self._bind(after[listener_id])
                opened.append(listener_id)
        except BaseException:
            await self._restore(opened, closed, before, old)
            raise
        self.server.listeners = list(new.listeners)
        for listener_id in gone:
            if listener_id not in after:
                log.info("SMTP listener %s removed", listener_id)

    async def _restore(self, opened: list[str], closed: dict[str, Any],
                       before: dict[str, Listener], old: Config) -> None:
        for listener_id in opened:
            self.server.servers.pop(listener_id).close()
        self.server.hostname = old.node.hostname
        for listener_id in closed:
            try:
                self.server.servers[listener_id] = await self._bind(before[listener_id])
            except OSError:
                log.exception("could not rebind SMTP listener %s", listener_id)

    async def _bind(self, listener: Listener) -> Any:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            self.server._factory(listener), host=listener.address, port=listener.port,
            reuse_port=getattr(self.server, "reuse_port", False) or None, start_serving=True,
        )
        port = server.sockets[0].getsockname()[1]
        log.info("SMTP listener %s on %s:%d (config change)", listener.id, listener.address, port)
        return server


