"""DATA with mail authentication: the checks, the flow's DATA stage seeing their results, then
the `[mailauth]` default policy where the script did not decide."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from appliance.config.schema import Config, MailAuthSection
from appliance.mailauth.check import Checker, default_decision
from appliance.mailauth.dns import Lookup, system_lookup
from appliance.mailauth.reports import EvaluationRecorder
from appliance.mailauth.results import HEADER, AuthResults, strip_own
from appliance.policy.flow import DataResult, Decision, Flow, SessionInfo, Verdict

log = logging.getLogger(__name__)

LookupFactory = Callable[[MailAuthSection], Lookup]


def _resolver_settings(section: MailAuthSection) -> tuple[Any, ...]:
    return (tuple(section.nameservers), section.dns_timeout, section.cache_entries,
            section.cache_max_ttl)


class AuthenticatedData:
    """Follows config revisions (`apply`): a changed resolver setting builds a new lookup (and
    cache); the other settings are read per message."""

    def __init__(self, config: Config, *, lookup: LookupFactory = system_lookup,
                 recorder: EvaluationRecorder | None = None) -> None:
        self._factory = lookup
        self.recorder = recorder
        self._record: Callable[[AuthResults], None] | None = \
            self._report if recorder is not None else None
        self._lock = threading.Lock()
        self._config = config
        self._checker = Checker(lookup(config.mailauth), record=self._record)

    def _report(self, results: AuthResults) -> None:
        if self.recorder is not None and self._config.mailauth.aggregate_reports:
            self.recorder(results)

    def start(self) -> None:
        if self.recorder is not None:
            self.recorder.start()

    def stop(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()

    @property
    def checker(self) -> Checker:
        return self._checker

    def apply(self, old: Config, new: Config) -> None:
        with self._lock:
            if _resolver_settings(old.mailauth) != _resolver_settings(new.mailauth):
                self._checker = Checker(self._factory(new.mailauth), orgs=self._checker.orgs,
                                        record=self._record)
            self._config = new

    def applies(self, session: SessionInfo) -> bool:
        section = self._config.mailauth
        if not section.enabled:
            return False
        if section.listeners and session.listener not in section.listeners:
            return False
        if section.skip_authenticated and session.authenticated:
            return False
        return not (section.skip_mynetworks and session.mynetwork)

    def authserv_id(self) -> str:
        return self._config.mailauth.authserv_id or self._config.node.hostname

    def run(self, flow: Flow, session: SessionInfo, content: bytes) -> tuple[DataResult, bytes]:
        """The DATA stage of a checked message, and the message without forged results."""
        section = self._config.mailauth
        authserv = self.authserv_id()
        content = strip_own(content, authserv)
        results = self._checker.check(content, client_ip=session.client_ip,
                                      sender=session.sender or "", helo=session.helo,
                                      settings=section)
        session.auth = results.lua()
        try:
            result = flow.data(session, content)
        finally:
            session.auth = None
        log.info("mailauth [%s] spf=%s dkim=%s dmarc=%s%s arc=%s lookups=%d", session.client_ip,
                 results.spf.result, results.dkim_result, results.dmarc.result,
                 f" ({results.dmarc.from_domain} {results.dmarc.disposition})"
                 if results.dmarc.record else "", results.arc.result, results.lookups)
        if result.verdict.decision in (Decision.REJECT, Decision.DEFER):
            return result, content
        if not result.decided:
            result.verdict = _verdict(results, section) or result.verdict
            if result.verdict.decision in (Decision.REJECT, Decision.DEFER):
                return result, content
        result.add_headers = [(HEADER, results.header_value(authserv)), *result.add_headers]
        result.metadata = {**results.metadata(), **result.metadata}
        return result, content


def _verdict(results: AuthResults, section: MailAuthSection) -> Verdict | None:
    decision = default_decision(results, section)
    if decision.action == "reject":
        return Verdict(decision=Decision.REJECT, code=550, text=decision.text)
    if decision.action == "defer":
        return Verdict(decision=Decision.DEFER, code=451, text=decision.text)
    if decision.action == "quarantine":
        return Verdict(decision=Decision.QUARANTINE, quarantine=decision.quarantine)
    return None
