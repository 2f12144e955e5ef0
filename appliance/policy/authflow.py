"""DATA with mail authentication: the checks, the flow's DATA stage seeing their results, then
the `[mailauth]` default policy where the script did not decide."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from typing import TYPE_CHECKING

from appliance.config.schema import Config, MailAuthSection
from appliance.mailauth.dns import Lookup, system_lookup
from appliance.policy.flow import DataResult, Decision, Flow, SessionInfo, Verdict

if TYPE_CHECKING:
    from appliance.db.engine import Store
    from appliance.mailauth.check import Checker
    from appliance.mailauth.forensic import ForensicReporter
    from appliance.mailauth.reports import EvaluationRecorder
    from appliance.mailauth.results import AuthResults

log = logging.getLogger(__name__)

LookupFactory = Callable[[MailAuthSection], Lookup]


def _resolver_settings(section: MailAuthSection) -> tuple[Any, ...]:
    return (tuple(section.nameservers), section.dns_timeout, section.cache_entries,
            section.cache_max_ttl)


class AuthenticatedData:
    """Follows config revisions (`apply`): a changed resolver setting builds a new lookup (and
    cache); the other settings are read per message. The checkers' libraries are loaded when
    the first message is checked, so a node that does not check never pays for them.

    With a `store`, evaluations are recorded for the aggregate reports (`aggregate_reports`)."""

    def __init__(self, config: Config, *, lookup: LookupFactory = system_lookup,
                 store: Store | None = None, forensic: ForensicReporter | None = None) -> None:
        self.forensic = forensic
        self._factory = lookup
        self._store = store
        self.recorder: EvaluationRecorder | None = None
        self._lock = threading.Lock()
        self._config = config
        self._checker: Checker | None = None
        self._running = False

    def _report(self, results: AuthResults) -> None:
        if self.recorder is not None and self._config.mailauth.aggregate_reports:
            self.recorder(results)

    def start(self) -> None:
        self._running = True
        if self.forensic is not None:
            self.forensic.start()

    def stop(self) -> None:
        self._running = False
        if self.forensic is not None:
            self.forensic.stop()
        with self._lock:
            recorder, self.recorder = self.recorder, None
        if recorder is not None:
            recorder.stop()

    @property
    def checker(self) -> Checker:
        with self._lock:
            if self._checker is None:
                from appliance.mailauth.check import Checker

                if self._store is not None and self.recorder is None and self._running:
                    from appliance.mailauth.reports import EvaluationRecorder

                    self.recorder = EvaluationRecorder(self._store)
                    self.recorder.start()
                checker = Checker(self._factory(self._config.mailauth), record=self._report)
                checker.orgs.of("example.com")  # the suffix list loads now, not in a budget
                self._checker = checker
            return self._checker

    def apply(self, old: Config, new: Config) -> None:
        with self._lock:
            if _resolver_settings(old.mailauth) != _resolver_settings(new.mailauth) \
                    and self._checker is not None:
                from appliance.mailauth.check import Checker

                self._checker = Checker(self._factory(new.mailauth), orgs=self._checker.orgs,
                                        record=self._report)
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
        return self._config.authserv_id()

    def run(self, flow: Flow, session: SessionInfo, content: bytes) -> tuple[DataResult, bytes]:
        """The DATA stage of a checked message, and the message without forged results."""
        from appliance.mailauth.results import HEADER, strip_own

        section = self._config.mailauth
        authserv = self.authserv_id()
        content = strip_own(content, authserv)
        results = self.checker.check(content, client_ip=session.client_ip,
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
        if result.verdict.decision not in (Decision.REJECT, Decision.DEFER) and not result.decided:
            result.verdict = _verdict(results, section) or result.verdict
        value = results.header_value(authserv)
        if self.forensic is not None:
            self._report_failure(results, session, content, result.verdict, value, section)
        if result.verdict.decision in (Decision.REJECT, Decision.DEFER):
            return result, content
        result.add_headers = [(HEADER, value), *result.add_headers]
        result.metadata = {**results.metadata(), **result.metadata}
        return result, content

    def _report_failure(self, results: AuthResults, session: SessionInfo, content: bytes,
                        verdict: Verdict, value: str, section: MailAuthSection) -> None:
        """Hand a failure the record's fo= asks about to the forensic reporter (RFC 7489 §7.3).
        A deferred message is not reported: it comes back."""
        assert self.forensic is not None
        if results.dmarc.record is None or verdict.decision == Decision.DEFER:
            return  # the common case costs this test only
        try:
            kind = self.forensic.wanted(results, section)
            if not kind:
                return
            from appliance.mailauth.forensic import DELIVERY_RESULTS, Failure, message_headers

            self.forensic.submit(Failure(
                results=results, auth_failure=kind, headers=message_headers(content),
                recipients=tuple(session.recipients), arrival=time.time(),
                delivery_result=DELIVERY_RESULTS.get(verdict.decision.value, "policy"),
                authentication_results=value, lookup=self.checker.lookup))
        except Exception:
            log.exception("DMARC failure report for %s not queued", results.dmarc.from_domain)


def _verdict(results: AuthResults, section: MailAuthSection) -> Verdict | None:
    from appliance.mailauth.check import default_decision

    decision = default_decision(results, section)
    if decision.action == "reject":
        return Verdict(decision=Decision.REJECT, code=550, text=decision.text)
    if decision.action == "defer":
        return Verdict(decision=Decision.DEFER, code=451, text=decision.text)
    if decision.action == "quarantine":
        return Verdict(decision=Decision.QUARANTINE, quarantine=decision.quarantine)
    return None
