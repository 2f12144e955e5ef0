"""Housekeeping's alert evaluator: counts every saved query, moves its state, and tells the
operators of each change by a node-log line, a mail through the node's own queue and a webhook."""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

from appliance.alerts import rules
from appliance.config.schema import Config
from appliance.db.engine import Store
from appliance.errors import ApplianceError
from appliance.hql import compile_filter
from appliance.policy.component import default_transport
from appliance.policy.queue import QueueMailer
from appliance.queue import query
from appliance.queue.spool import Spool
from appliance.stats.periodic import Periodic

log = logging.getLogger(__name__)


class Mailer(Protocol):
    def send(self, sender: str, recipient: str, subject: str, body: str) -> str: ...


Webhook = Callable[[str, bytes, float], int]  # (url, JSON body, timeout) -> HTTP status


def post_json(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "appliance-alerts"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) checked at add
        return int(response.status)


class AlertRunner(Periodic):
    thread_name = "alerts"

    def __init__(self, store: Store, *, config: Callable[[], Config], mailer: Mailer | None,
                 webhook: Webhook = post_json, clock: Callable[[], float] = time.time,
                 node_name: Callable[[], str] = lambda: "") -> None:
        super().__init__()
        self._store = store
        self._config = config
        self._mailer = mailer
        self._webhook = webhook
        self._clock = clock
        self._node_name = node_name
        self.interval = config().alerts.interval
        self.evaluations = 0

    def tick(self) -> list[rules.Transition]:
        cfg = self._config()
        self.interval = cfg.alerts.interval
        try:
            changed = self.evaluate()
        except Exception:
            log.exception("alert evaluation failed")
            return []
        for change in changed:
            self._tell(change, cfg)
        return changed

    def evaluate(self) -> list[rules.Transition]:
        """One evaluation of every saved query, committed before anyone is told."""
        now = self._clock()
        changed: list[rules.Transition] = []
        with self._store.transaction() as session:
            for row in rules.listing(session):
                text = rules.condition_text(session, row)
                if text is None:
                    continue
                try:
                    count = query.count(session, compile_filter(text))
                except ApplianceError as exc:
                    log.warning("alert %s of %s cannot be evaluated: %s", row.name, row.owner, exc)
                    continue
                if rules.step(row, count, now) is not None:
                    changed.append(rules.transition(row))
        self.evaluations += 1
        return changed

    def _tell(self, change: rules.Transition, cfg: Config) -> None:
        firing = change.state == rules.FIRING
        what = (f"alert {change.name} of {change.owner} {'FIRING' if firing else 'cleared'}: "
                f"{change.count} entries match {change.filter!r} (threshold {change.threshold}"
                f"{f' for {change.minutes:g} min' if firing and change.minutes else ''})")
        (log.warning if firing else log.info)("%s", what)
        payload = _payload(change, self._node_name())
        recipient = change.mail_to or cfg.alerts.mail_to
        if recipient and self._mailer is not None:
            try:
                self._mailer.send(cfg.alerts.mail_from, recipient, what,
                                  what + "\n\n" + json.dumps(payload, indent=2, sort_keys=True) + "\n")
            except Exception as exc:
                log.error("alert %s: mail to <%s> not queued: %s", change.name, recipient, exc)
        if change.webhook:
            try:
                status = self._webhook(change.webhook, json.dumps(payload, sort_keys=True).encode(),
                                       cfg.alerts.webhook_timeout)
                log.info("alert %s: webhook %s answered %d", change.name, change.webhook, status)
            except Exception as exc:
                log.error("alert %s: webhook %s failed: %s", change.name, change.webhook, exc)


def _payload(change: rules.Transition, node: str) -> dict[str, Any]:
    return {"alert": change.name, "owner": change.owner, "state": change.state,
            "since": change.since, "count": change.count, "threshold": change.threshold,
            "minutes": change.minutes, "filter": change.filter, "node": node}


def build_alerts(store: Store, spool: Spool, config: Callable[[], Config], *,
                 on_enqueued: Callable[[], None]) -> AlertRunner:
    """Housekeeping's evaluator; alert mails are queued like a script's mail() and wake
    delivery (`on_enqueued` is called from the evaluator's thread)."""
    mailer = QueueMailer(store, spool, transport=lambda: default_transport(config()),
                         hostname=lambda: config().node.hostname, clock=time.time,
                         on_enqueued=on_enqueued)
    return AlertRunner(store, config=config, mailer=mailer, node_name=lambda: config().node.name)
