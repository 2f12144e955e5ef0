"""DMARC failure (forensic, ruf=) reports (RFC 7489 §7.3): which failures the record's fo= asks
about, the AFRF report (RFC 5965, RFC 6591) with the header section only, and the sender that
checks §7.1, the ruf= size limit and a per-domain rate before queueing it.

Off unless `[mailauth] forensic_reports = true`: a report carries who wrote to whom, and for a
mailing list who is on it. The body is never sent (RFC 6591 §4 allows headers alone)."""

from __future__ import annotations

import collections
import dataclasses
import email.utils
import heapq
import itertools
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from appliance import __version__
from appliance.db.engine import Store
from appliance.mailauth.dmarc import OrgDomains
from appliance.mailauth.dns import Budget, DnsTempError, Lookup
from appliance.mailauth.reports import authorised, queue_report, report_settings
from appliance.queue.spool import Spool
from appliance.stats.periodic import Periodic
from appliance.stats.rates import count_stored_hit
from appliance.stats.window import SlidingWindow

if TYPE_CHECKING:
    from appliance.mailauth.results import AuthResults

log = logging.getLogger(__name__)

RATE_NS = "dmarc-forensic"  # the rate() namespace of the per-domain limit (listed by `rates`)
FO_OPTIONS = ("0", "1", "d", "s")
_DKIM_FAILED = ("fail", "permerror", "neutral", "policy")
_SPF_FAILED = ("fail", "softfail", "permerror")
# RFC 6591 §3.2 Delivery-Result by what the node did with the message.
DELIVERY_RESULTS = {"accept": "delivered", "quarantine": "spam", "reject": "reject"}
# A report whose DNS lookups (§7.1) failed is tried again after these delays: three attempts
# over about six minutes, then it is dropped. Retries wait in memory, at most MAX_RETRIES.
RETRY_DELAYS = (60.0, 300.0)
MAX_RETRIES = 100


def retry_delay(attempts: int) -> float | None:
    """Seconds until the next attempt after `attempts` attempts failed on DNS; None: give up."""
    return RETRY_DELAYS[attempts - 1] if 1 <= attempts <= len(RETRY_DELAYS) else None


def fo_options(fo: str) -> frozenset[str]:
    """The fo= tag's options (§6.3: colon-separated; unknown ones ignored; default 0)."""
    found = frozenset(o.strip().lower() for o in fo.split(":")) & set(FO_OPTIONS)
    return found or frozenset("0")


def failure_type(results: AuthResults) -> str:
    """The Auth-Failure of the report the record's fo= asks for this message, "" for none:
    `dmarc` (fo=0: no aligned pass; fo=1: some mechanism without an aligned pass),
    `signature` (fo=d: a DKIM signature failed, aligned or not), `spf` (fo=s: SPF failed)."""
    dm = results.dmarc
    if dm.record is None or dm.result not in ("pass", "fail") or not dm.record.ruf:
        return ""
    options = fo_options(dm.record.fo)
    if dm.result == "fail" and "0" in options:
        return "dmarc"
    if "1" in options and not (dm.spf_aligned and dm.dkim_aligned):
        return "dmarc"
    if "d" in options and any(d.result in _DKIM_FAILED for d in results.dkim):
        return "dmarc" if dm.result == "fail" else "signature"
    if "s" in options and results.spf.result in _SPF_FAILED:
        return "dmarc" if dm.result == "fail" else "spf"
    return ""


@dataclasses.dataclass(frozen=True)
class Failure:
    """One message to report: what the report needs, copied out of the SMTP session."""

    results: AuthResults
    auth_failure: str
    headers: bytes  # the original header section, CRLF line ends, without the blank line
    recipients: tuple[str, ...]
    arrival: float
    delivery_result: str  # RFC 6591: delivered, spam, policy, reject, other
    authentication_results: str  # our Authentication-Results value
    lookup: Lookup


def _field(value: str) -> str:
    """A value safe for one header line: no CR/LF/controls, bounded."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", value).strip()[:900]


def _dkim_identity(headers: bytes, domain: str, selector: str) -> str:
    """i= of the DKIM-Signature with this d= and s= (RFC 6591 §3.1 DKIM-Identity), "" if none."""
    text = headers.decode("utf-8", "replace").replace("\r\n ", " ").replace("\r\n\t", " ")
    for line in text.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() != "dkim-signature":
            continue
        tags = dict((k.strip().lower(), re.sub(r"\s+", "", v)) for k, _, v in
                    (t.partition("=") for t in value.split(";")))
        if tags.get("d", "").lower() == domain.lower() and tags.get("s", "") == selector:
            return tags.get("i", "")
    return ""


def feedback_fields(failure: Failure, *, hostname: str) -> list[tuple[str, str]]:
    """The message/feedback-report part's fields (RFC 5965 §3.5, RFC 6591 §3.1, RFC 7489 §7.3.1)."""
    results = failure.results
    dm = results.dmarc
    fields = [
        ("Feedback-Type", "auth-failure"), ("User-Agent", f"appliance/{__version__}"),
        ("Version", "1"), ("Auth-Failure", failure.auth_failure),
        ("Original-Mail-From", f"<{_field(results.sender)}>"),
    ]
    fields += [("Original-Rcpt-To", f"<{_field(r)}>") for r in failure.recipients]
    fields += [
        ("Arrival-Date", email.utils.formatdate(failure.arrival)),
        ("Reporting-MTA", f"dns; {hostname}"), ("Source-IP", _field(results.client_ip)),
        ("Reported-Domain", dm.from_domain),
        ("Authentication-Results", _field(failure.authentication_results)),
    ]
    dkim = next((d for d in results.dkim if d.result != "pass" and d.domain),
                next((d for d in results.dkim if d.domain), None))
    if dkim is not None:
        fields.append(("DKIM-Domain", dkim.domain))
        identity = _dkim_identity(failure.headers, dkim.domain, dkim.selector)
        if identity:
            fields.append(("DKIM-Identity", _field(identity)))
        if dkim.selector:
            fields.append(("DKIM-Selector", dkim.selector))
    fields.append(("Delivery-Result", failure.delivery_result))
    return fields


def build_report(failure: Failure, *, sender: str, recipient: str, hostname: str,
                 now: float) -> tuple[bytes, str]:
    """The report mail (RFC 5965 §2): multipart/report; report-type=feedback-report with a
    human part, the feedback report and the original header section (text/rfc822-headers)."""
    dm = failure.results.dmarc
    boundary = f"=_afrf_{uuid.uuid4().hex}"
    subject = f"DMARC failure report for {dm.from_domain} from {_field(failure.results.client_ip)}"
    crlf = "\r\n"
    human = (f"This is an authentication failure report for a message received by {hostname} "
             f"from {_field(failure.results.client_ip)} with From domain {dm.from_domain}: "
             f"DMARC {dm.result} (policy domain {dm.policy_domain}). Only the message's header "
             f"section is included.")
    report = crlf.join(f"{k}: {v}" for k, v in feedback_fields(failure, hostname=hostname))
    headers = failure.headers.rstrip(b"\r\n") + b"\r\n"
    encoding = "7bit" if headers.isascii() else "8bit"
    head = crlf.join([
        f"From: {sender}", f"To: {recipient}", f"Subject: {subject}",
        f"Date: {email.utils.formatdate(now)}",
        f"Message-ID: <{uuid.uuid4().hex}.forensic@{hostname}>",
        "Auto-Submitted: auto-generated", "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"',
    ])
    parts = [
        f"--{boundary}{crlf}Content-Type: text/plain; charset=us-ascii{crlf}"
        f"Content-Transfer-Encoding: 7bit{crlf}{crlf}{_ascii(human)}{crlf}",
        f"--{boundary}{crlf}Content-Type: message/feedback-report{crlf}{crlf}{report}{crlf}",
        f"--{boundary}{crlf}Content-Type: text/rfc822-headers{crlf}"
        f"Content-Transfer-Encoding: {encoding}{crlf}{crlf}",
    ]
    data = (head + crlf + crlf + "".join(parts[:2]) + parts[2]).encode("ascii") + headers
    return data + f"{crlf}--{boundary}--{crlf}".encode("ascii"), subject


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")


def message_headers(content: bytes) -> bytes:
    """The header section of a message (without the blank line that ends it)."""
    head, sep, _ = content.partition(b"\r\n\r\n")
    return head if sep else content[:64 * 1024]


# -- sending ------------------------------------------------------------------------------------

@dataclasses.dataclass
class SendReport:
    messages: int = 0
    refused: list[str] = dataclasses.field(default_factory=list)  # addresses §7.1 refused
    too_big: list[str] = dataclasses.field(default_factory=list)  # over their !size
    limited: bool = False  # the domain's rate was used up


def allowed_domain(results: AuthResults, domains: Sequence[str]) -> bool:
    """Whether `[mailauth] forensic_domains` lets this message's domain get reports."""
    dm = results.dmarc
    return not domains or dm.policy_domain in domains or dm.from_domain in domains


def send_report(store: Store, spool: Spool, failure: Failure, *, config: Any, orgs: OrgDomains,
                now: float) -> SendReport:
    """Queue the report of one failure to each ruf= address that §7.1 allows and whose size
    limit it fits, counting one hit of the policy domain's rate (shared by every process on
    this store) in the same transaction. DnsTempError propagates (the reporter retries)."""
    dm = failure.results.dmarc
    assert dm.record is not None
    settings = report_settings(config)
    section = config.mailauth
    budget = Budget(failure.lookup, seconds=10.0, per_lookup=section.dns_timeout)
    out = SendReport()
    mails: list[tuple[str, bytes, str]] = []
    for uri in dm.record.ruf:
        if not authorised(budget, policy_domain=dm.policy_domain, address=uri.address, orgs=orgs):
            log.info("DMARC failure report for %s not sent to <%s>: that domain does not accept "
                     "reports for it (RFC 7489 section 7.1)", dm.policy_domain, uri.address)
            out.refused.append(uri.address)
            continue
        data, subject = build_report(failure, sender=settings.sender, recipient=uri.address,
                                     hostname=settings.hostname, now=now)
        if uri.limit and len(data) > uri.limit:
            log.info("DMARC failure report for %s too big for <%s> (!%d)", dm.policy_domain,
                     uri.address, uri.limit)
            out.too_big.append(uri.address)
            continue
        mails.append((uri.address, data, subject))
    if not mails:
        return out
    written: list[str] = []
    try:
        with store.transaction() as session:
            if not count_stored_hit(session, ns=RATE_NS, entry=dm.policy_domain,
                                    count=section.forensic_rate,
                                    interval=section.forensic_interval, now=now):
                out.limited = True
                return out
            for address, data, subject in mails:
                written.append(queue_report(session, spool, data=data, subject=subject,
                                            sender=settings.sender, recipient=address,
                                            transport=settings.transport, now=now))
                out.messages += 1
    except BaseException:
        for path in written:
            spool.remove(path)
        raise
    log.info("DMARC failure report for %s (%s from [%s]) queued to %s", dm.policy_domain,
             failure.auth_failure, failure.results.client_ip,
             ", ".join(f"<{a}>" for a, _, _ in mails))
    return out


class ForensicReporter(Periodic):
    """Takes failures from the DATA path (`submit` only copies them into a bounded queue) and
    sends their reports on its own thread, so the SMTP reply never waits for DNS or a commit.
    A per-domain window in memory drops a flood before it costs a transaction; the stored rate
    in `send_report` is the limit that counts across receivers. A report whose DNS failed is
    tried again after `retry_delay` (in memory: a restart loses the retries waiting)."""

    thread_name = "dmarc-forensic"

    def __init__(self, store: Store, spool: Spool, *, config: Callable[[], Any],
                 on_enqueued: Callable[[], None] | None = None, max_pending: int = 1000,
                 max_retries: int = MAX_RETRIES, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.store, self.spool = store, spool
        self.interval = 5.0
        self._config = config
        self._on_enqueued = on_enqueued
        self._clock = clock
        self._orgs = OrgDomains()
        self._lock = threading.Lock()
        self._pending: collections.deque[Failure] = collections.deque(maxlen=max_pending)
        # (due, order, attempts made, failure): reports whose DNS failed, earliest due first
        self._retries: list[tuple[float, int, int, Failure]] = []
        self._max_retries = max_retries
        self._order = itertools.count()
        self._windows: dict[str, SlidingWindow] = {}
        self._open = False  # start() was called: a submission may start the thread
        self.sent = 0
        self.dropped = 0

    def wanted(self, results: AuthResults, section: Any) -> str:
        """The Auth-Failure to report for these results under the `[mailauth]` section the
        message was checked with, "" when none is to be sent (cheap)."""
        if not section.forensic_reports:
            return ""
        kind = failure_type(results)
        if not kind or not allowed_domain(results, section.forensic_domains):
            return ""
        return kind

    def submit(self, failure: Failure) -> bool:
        """Queue a failure for its report; False when its domain's rate is used up here."""
        section = self._config().mailauth
        domain = failure.results.dmarc.policy_domain
        with self._lock:
            window = self._windows.setdefault(domain, SlidingWindow())
            if not window.hit(failure.arrival, section.forensic_rate, section.forensic_interval):
                self.dropped += 1
                return False
            if len(self._windows) > 10_000:  # bounded: forget the windows of quiet domains
                self._windows = {domain: window}
            self._pending.append(failure)
            if self._open and not self.running:
                super().start()  # the thread starts with the first report, not with every node
        self.wake()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        with self._lock:
            self._open = True

    @property
    def retrying(self) -> int:
        """Reports waiting for another attempt after a DNS failure."""
        with self._lock:
            return len(self._retries)

    def tick(self) -> int:
        queued = 0
        while True:
            item = self._next()
            if item is None:
                break
            attempts, failure = item
            try:
                out = send_report(self.store, self.spool, failure, config=self._config(),
                                  orgs=self._orgs, now=self._clock())
            except DnsTempError as exc:
                self._retry(attempts + 1, failure, exc)
                continue
            except Exception:
                log.exception("DMARC failure report for %s failed",
                              failure.results.dmarc.policy_domain)
                continue
            queued += out.messages
        if queued:
            self.sent += queued
            if self._on_enqueued is not None:
                self._on_enqueued()
        return queued

    def _next(self) -> tuple[int, Failure] | None:
        """The next report to try: a new one, else a retry that is due; with attempts made."""
        with self._lock:
            if self._pending:
                return 0, self._pending.popleft()
            if self._retries and self._retries[0][0] <= self._clock():
                _due, _order, attempts, failure = heapq.heappop(self._retries)
                return attempts, failure
        return None

    def _retry(self, attempts: int, failure: Failure, exc: DnsTempError) -> None:
        domain = failure.results.dmarc.policy_domain
        delay = retry_delay(attempts)
        with self._lock:
            room = len(self._retries) < self._max_retries
            if delay is not None and room:
                heapq.heappush(self._retries, (self._clock() + delay, next(self._order),
                                               attempts, failure))
            else:
                self.dropped += 1
        if delay is not None and room:
            log.info("DMARC failure report for %s: DNS failed (%s); attempt %d in %d s",
                     domain, exc, attempts + 1, delay)
        else:
            why = f"{attempts} attempts failed" if delay is None else \
                f"{self._max_retries} reports wait for a retry already"
            log.info("DMARC failure report for %s dropped: %s (%s)", domain, exc, why)

    def stop(self) -> bool:
        with self._lock:
            self._open = False
        running = super().stop()
        self.tick()  # what is still pending
        with self._lock:
            lost, self._retries = len(self._retries), []
        if lost:
            log.info("%d DMARC failure reports waiting for a DNS retry dropped at stop", lost)
        return running
