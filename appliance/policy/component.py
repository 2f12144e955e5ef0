"""Policy as a node part: the config's scripts become the node's Flow, recompiled when they change."""

from __future__ import annotations

import logging
import time
from typing import Any

from appliance.policy.apiauth import SCRIPT_ID, ApiAuthScript
from appliance.policy.functions import Functions
from appliance.policy.http import UrllibHttpClient
from appliance.policy.memory import MemoryCounters, MemoryRates
from appliance.policy.queue import QueueMailer, StoreQueueAccess
from appliance.policy.router import FlowCache
from appliance.policy.sandbox import ScriptError

log = logging.getLogger(__name__)


def node_functions(node: Any) -> Functions:
    """The real edges: the node's stats engine, urllib, its own queue for mail() and metadata."""
    stats = getattr(node, "stats", None)
    if stats is None:
        log.warning("no stats component: stat()/rate() in scripts count in memory only")
    mailer = QueueMailer(
        node.store, node.spool, transport=lambda: _default_transport(node),
        hostname=lambda: node.config.node.hostname, clock=time.time, on_enqueued=_kicker(node),
    )
    return Functions(
        counters=stats.counters if stats is not None else MemoryCounters(),
        rates=stats.rates if stats is not None else MemoryRates(),
        http=UrllibHttpClient(allow=lambda: node.config.policy.http_allow), mailer=mailer,
        queue=StoreQueueAccess(node.store),
    )


class PolicyComponent:
    """Holds the compiled scripts; `node.flow` answers with them from the first config on."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.cache = FlowCache(node_functions(node), metrics=node.metrics)
        self.api_auth: ApiAuthScript | None = None
        self._api_auth_text: str | None = None
        self.use(node.config)

    def apply(self, old: Any, new: Any) -> None:
        """appliance.config.holder.Subscriber: compile and switch to `new`'s scripts."""
        self.use(new)

    def use(self, config: Any) -> None:
        self.node.set_flow(self.cache.build(config))
        text = (getattr(config, "scripts", {}) or {}).get(SCRIPT_ID)
        if text != self._api_auth_text:
            self._api_auth_text = text
            self.api_auth = None
            if text:
                try:
                    self.api_auth = ApiAuthScript(text, functions=self.cache.functions)
                except ScriptError as exc:
                    log.error("api-auth script cannot be used, built-in levels apply: %s", exc)
        log.info("policy scripts applied (%d compiled so far)", self.cache.compilations)

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None


def _default_transport(node: Any) -> str:
    transports = node.config.transports
    ids = [t.id for t in transports]
    return "default" if "default" in ids else (ids[0] if ids else "default")


def _kicker(node: Any) -> Any:
    def kick() -> None:
        loop = getattr(node, "loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(node.notify_enqueued)

    return kick


def component(node: Any) -> PolicyComponent:
    """The wiring factory; leaves the part on `node.policy` (SOAP reads `node.policy.api_auth`)."""
    policy = PolicyComponent(node)
    node.policy = policy
    node.subscribe(policy)
    return policy
