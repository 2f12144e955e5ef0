"""Policy as a node part: the config's scripts become the node's Flow, recompiled when they change."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from appliance.config.schema import Config
from appliance.db.engine import Store
from appliance.policy.apiauth import SCRIPT_ID, ApiAuthScript
from appliance.policy.flow import (DataResult, DeliveryInfo, DeliveryOutcome, Flow, SessionInfo,
                                   Verdict)
from appliance.policy.functions import CountersLike, Functions, RatesLike
from appliance.policy.http import UrllibHttpClient
from appliance.policy.queue import QueueMailer, StoreQueueAccess
from appliance.policy.router import FlowCache
from appliance.policy.sandbox import ScriptError
from appliance.queue.spool import Spool
from appliance.stats.metrics import Instruments

log = logging.getLogger(__name__)


def node_functions(*, store: Store, spool: Spool, config: Callable[[], Config],
                   counters: CountersLike, rates: RatesLike,
                   on_enqueued: Callable[[], None]) -> Functions:
    """The real edges: the node's stats engine, urllib, its own queue for mail() and metadata.
    `on_enqueued` is called from the script's thread after mail() queued a message."""
    mailer = QueueMailer(
        store, spool, transport=lambda: default_transport(config()),
        hostname=lambda: config().node.hostname, clock=time.time, on_enqueued=on_enqueued,
    )
    return Functions(
        counters=counters, rates=rates,
        http=UrllibHttpClient(allow=lambda: config().policy.http_allow), mailer=mailer,
        queue=StoreQueueAccess(store),
    )


class PolicyComponent:
    """The node's Flow: every call goes to the scripts compiled from the newest config applied
    (a config Subscriber). `api_auth` is the api-auth script of that config, if any."""

    def __init__(self, functions: Functions, config: Config, *,
                 metrics: Instruments | None = None) -> None:
        self.cache = FlowCache(functions, metrics=metrics)
        self.flow: Flow = self.cache.build(config)
        self.api_auth: ApiAuthScript | None = None
        self._api_auth_text: str | None = None
        self.use(config)

    def apply(self, old: Config, new: Config) -> None:
        """appliance.config.holder.Subscriber: compile and switch to `new`'s scripts."""
        self.use(new)

    def use(self, config: Config) -> None:
        self.flow = self.cache.build(config)
        text = (config.scripts or {}).get(SCRIPT_ID)
        if text != self._api_auth_text:
            self._api_auth_text = text
            self.api_auth = None
            if text:
                try:
                    self.api_auth = ApiAuthScript(text, functions=self.cache.functions)
                except ScriptError as exc:
                    log.error("api-auth script cannot be used, built-in levels apply: %s", exc)
        log.info("policy scripts applied (%d compiled so far)", self.cache.compilations)

    # -- Flow, answered by the current scripts ----------------------------------------------
    def connect(self, session: SessionInfo) -> Verdict:
        return self.flow.connect(session)

    def auth(self, session: SessionInfo, username: str, password: str) -> Verdict | None:
        return self.flow.auth(session, username, password)

    def mail_from(self, session: SessionInfo, sender: str) -> Verdict:
        return self.flow.mail_from(session, sender)

    def rcpt_to(self, session: SessionInfo, recipient: str) -> Verdict:
        return self.flow.rcpt_to(session, recipient)

    def data(self, session: SessionInfo, message: bytes) -> DataResult:
        return self.flow.data(session, message)

    def pre_delivery(self, entry: DeliveryInfo) -> Verdict:
        return self.flow.pre_delivery(entry)

    def post_delivery(self, entry: DeliveryInfo, outcome: DeliveryOutcome) -> None:
        self.flow.post_delivery(entry, outcome)

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None


def default_transport(config: Config) -> str:
    ids = [t.id for t in config.transports]
    return "default" if "default" in ids else (ids[0] if ids else "default")
