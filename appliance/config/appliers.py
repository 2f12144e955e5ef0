"""Subscribers that carry a new Config into the running node's parts (see holder.Subscriber)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Protocol

from appliance.config.schema import Config

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
    # appliance.smtp.server.SmtpServer (config must not import the SMTP adapter)
    return hasattr(component, "listeners") and inspect.iscoroutinefunction(
        getattr(component, "reconfigure", None))


class SmtpListeners:
    """Carries a config change to a running appliance.smtp.server.SmtpServer through its
    `reconfigure(old_listeners, new_listeners, hostname=...)`, run on the node's event loop;
    sessions in progress finish on their old settings."""

    def __init__(self, server: Any, loop: asyncio.AbstractEventLoop | None,
                 timeout: float = 30.0) -> None:
        self.server = server
        self.loop = loop
        self.timeout = timeout

    def apply(self, old: Config, new: Config) -> None:
        change = self.server.reconfigure(list(old.listeners), list(new.listeners),
                                         hostname=new.node.hostname)
        if self.loop is None or self.loop.is_closed():
            asyncio.run(change)  # no running node loop: the server is not started either
            return
        future = asyncio.run_coroutine_threadsafe(change, self.loop)
        future.result(timeout=self.timeout)
