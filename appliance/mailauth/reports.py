"""DMARC aggregate reports (RFC 7489 §7.2): each evaluation recorded, one XML report per
reporting domain and period, gzipped and queued to the rua= addresses that may receive it."""

from __future__ import annotations

import collections
import dataclasses
import email.message
import email.utils
import gzip
import ipaddress
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from appliance.db.engine import Store
from appliance.db.models_mailauth import DmarcEvaluation
from appliance.mailauth.dmarc import OrgDomains
from appliance.mailauth.dns import Budget, DnsTempError, Lookup, system_lookup, txt_strings
from appliance.queue import store as queue_store
from appliance.queue.spool import Spool
from appliance.stats.periodic import Periodic
from appliance.types import Envelope, NewMessage

if TYPE_CHECKING:
    from appliance.mailauth.results import AuthResults

log = logging.getLogger(__name__)

NAMESPACE = "http://dmarc.org/dmarc-xml/0.1"


def evaluation_row(results: AuthResults, *, now: float) -> dict[str, Any]:
    """The dmarc_evaluations row of one message (its DMARC record was found)."""
    dm = results.dmarc
    record = dm.record
    assert record is not None
    override = "sampled_out" if dm.sampled_out else ""
    return dict(
        ts=now, policy_domain=dm.policy_domain, header_from=dm.from_domain,
        envelope_from=results.sender.rpartition("@")[2].lower()[:255],
        source_ip=results.client_ip[:64], disposition=dm.disposition,
        dkim_aligned="pass" if dm.dkim_aligned else "fail",
        spf_aligned="pass" if dm.spf_aligned else "fail", override=override,
        p=record.p, sp=record.sp, pct=record.pct, adkim=record.adkim, aspf=record.aspf,
        fo=record.fo[:16], rua=json.dumps([[u.address, u.limit] for u in record.rua]),
        ruf=json.dumps([[u.address, u.limit] for u in record.ruf]),
        spf_domain=results.spf.domain[:255], spf_scope=results.spf.scope,
        spf_result=results.spf.result,
        dkim=json.dumps([[d.domain, d.selector, d.result] for d in results.dkim if d.domain]),
    )


class EvaluationRecorder(Periodic):
    """Collects evaluations in memory and writes them in one transaction per `interval`: a
    report row is statistics, not mail, so it does not cost each message a commit."""

    thread_name = "dmarc-record"

    def __init__(self, store: Store, *, interval: float = 1.0, max_pending: int = 100_000,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.store = store
        self.interval = interval
        self.max_pending = max_pending
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []

    def __call__(self, results: AuthResults) -> None:
        row = evaluation_row(results, now=self._clock())
        with self._lock:
            if len(self._pending) < self.max_pending:
                self._pending.append(row)

    def tick(self) -> int:
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return 0
        try:
            with self.store.transaction() as session:
                session.bulk_insert_mappings(DmarcEvaluation, rows)  # type: ignore[arg-type]
        except Exception:
            log.exception("writing %d DMARC evaluations failed", len(rows))
            with self._lock:
                self._pending[:0] = rows[: self.max_pending - len(self._pending)]
            return 0
        return len(rows)

    def stop(self) -> bool:
        running = super().stop()
        self.tick()  # what is still pending
        return running


# -- the report ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ReportMeta:
    org_name: str
    email: str
    report_id: str
    begin: int
    end: int
    extra_contact_info: str = ""


def _ip(text: str) -> str:
    """The address as the schema's IPAddress pattern wants it (IPv6 fully written out)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    return address.exploded if address.version == 6 else str(address)


def _sub(parent: Any, name: str, text: object | None = None) -> Any:
    from lxml import etree

    element = etree.SubElement(parent, f"{{{NAMESPACE}}}{name}")
    if text is not None:
        element.text = str(text)
    return element


def build_report(rows: Sequence[DmarcEvaluation], *, policy_domain: str, meta: ReportMeta) -> bytes:
    """The aggregate report of one reporting domain (RFC 7489 Appendix C), one record per set
    of identical (source, identifiers, results)."""
    from lxml import etree

    root = etree.Element(f"{{{NAMESPACE}}}feedback", nsmap={None: NAMESPACE})
    _sub(root, "version", "1.0")
    md = _sub(root, "report_metadata")
    _sub(md, "org_name", meta.org_name)
    _sub(md, "email", meta.email)
    if meta.extra_contact_info:
        _sub(md, "extra_contact_info", meta.extra_contact_info)
    _sub(md, "report_id", meta.report_id)
    dr = _sub(md, "date_range")
    _sub(dr, "begin", meta.begin)
    _sub(dr, "end", meta.end)
    latest = rows[-1]  # the policy as last seen in the period
    pp = _sub(root, "policy_published")
    _sub(pp, "domain", policy_domain)
    _sub(pp, "adkim", latest.adkim)
    _sub(pp, "aspf", latest.aspf)
    _sub(pp, "p", latest.p)
    _sub(pp, "sp", latest.sp)
    _sub(pp, "pct", latest.pct)
    _sub(pp, "fo", latest.fo)
    groups: collections.OrderedDict[tuple[Any, ...], int] = collections.OrderedDict()
    for row in rows:
        key = (row.source_ip, row.disposition, row.dkim_aligned, row.spf_aligned, row.override,
               row.header_from, row.envelope_from, row.dkim, row.spf_domain, row.spf_scope,
               row.spf_result)
        groups[key] = groups.get(key, 0) + 1
    for key, count in groups.items():
        (source_ip, disposition, dkim_aligned, spf_aligned, override, header_from,
         envelope_from, dkim, spf_domain, spf_scope, spf_result) = key
        record = _sub(root, "record")
        row_el = _sub(record, "row")
        _sub(row_el, "source_ip", _ip(source_ip))
        _sub(row_el, "count", count)
        pe = _sub(row_el, "policy_evaluated")
        _sub(pe, "disposition", disposition)
        _sub(pe, "dkim", dkim_aligned)
        _sub(pe, "spf", spf_aligned)
        if override:
            reason = _sub(pe, "reason")
            _sub(reason, "type", override)
        ids = _sub(record, "identifiers")
        _sub(ids, "envelope_from", envelope_from)
        _sub(ids, "header_from", header_from)
        auth = _sub(record, "auth_results")
        for domain, selector, result in json.loads(dkim):
            d = _sub(auth, "dkim")
            _sub(d, "domain", domain)
            if selector:
                _sub(d, "selector", selector)
            _sub(d, "result", result)
        s = _sub(auth, "spf")
        _sub(s, "domain", spf_domain or envelope_from or header_from)
        _sub(s, "scope", spf_scope)
        _sub(s, "result", spf_result)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def authorised(budget: Budget, *, policy_domain: str, address: str, orgs: OrgDomains) -> bool:
    """§7.1: a report for `policy_domain` may go to `address` when both have one organizational
    domain, or when `<policy_domain>._report._dmarc.<address domain>` publishes v=DMARC1.
    DnsTempError propagates (ask again at the next run)."""
    target = address.rpartition("@")[2].lower().rstrip(".")
    if not target:
        return False
    if orgs.of(target) == orgs.of(policy_domain):
        return True
    answer = budget.query(f"{policy_domain}._report._dmarc.{target}", "TXT", purpose="report")
    texts = [t.decode("utf-8", "replace").strip() for t in txt_strings(answer)]
    return any(t.replace(" ", "").upper().startswith("V=DMARC1") for t in texts)


def report_message(xml: bytes, *, policy_domain: str, meta: ReportMeta, sender: str,
                   recipient: str, hostname: str, now: float) -> tuple[bytes, str]:
    """The report mail (§7.2.1.1): gzip attachment named receiver!domain!begin!end.xml.gz."""
    msg = email.message.EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    subject = f"Report Domain: {policy_domain} Submitter: {meta.org_name} Report-ID: <{meta.report_id}>"
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(now)
    msg["Message-ID"] = f"<{meta.report_id}.{uuid.uuid4().hex[:8]}@{hostname}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(f"DMARC aggregate report for {policy_domain} from {meta.org_name}, "
                    f"{meta.begin} to {meta.end}.\n")
    filename = f"{meta.org_name}!{policy_domain}!{meta.begin}!{meta.end}.xml.gz"
    msg.add_attachment(gzip.compress(xml, mtime=0), maintype="application", subtype="gzip",
                       filename=filename)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")), subject


@dataclasses.dataclass
class RunReport:
    reports: int = 0
    messages: int = 0
    refused: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (domain, address)


class ReportSettings:
    """What a report run needs from the config (read at each run)."""

    def __init__(self, *, org_name: str, sender: str, hostname: str, interval: float,
                 max_records: int, transport: str = "default") -> None:
        self.org_name, self.sender, self.hostname = org_name, sender, hostname
        self.interval, self.max_records, self.transport = interval, max_records, transport


def report_settings(config: Any) -> ReportSettings:
    """Who the node's DMARC reports (aggregate and forensic) come from, from the config."""
    section = config.mailauth
    hostname = config.node.hostname
    return ReportSettings(
        org_name=section.report_org_name or hostname,
        sender=section.report_from or f"dmarc-noreply@{hostname}", hostname=hostname,
        interval=section.report_interval, max_records=section.report_max_records,
        transport=config.transports[0].id if config.transports else "default")


def send_reports(store: Store, spool: Spool, lookup: Lookup, *, settings: ReportSettings,
                 now: float, orgs: OrgDomains | None = None,
                 on_enqueued: Callable[[], None] | None = None) -> RunReport:
    """Report every finished period: rows with ts before the current period's start, one
    report per (domain, period), queued to each authorised rua= address; the rows go in the
    same transaction that queues the reports (a crash reports them again, never loses them)."""
    orgs = orgs or OrgDomains()
    cut = int(now // settings.interval * settings.interval)
    out = RunReport()
    with store.transaction(read_only=True) as session:
        domains = [d for (d,) in session.execute(
            select(DmarcEvaluation.policy_domain).where(DmarcEvaluation.ts < cut).distinct())]
    for domain in domains:
        try:
            _report_domain(store, spool, lookup, domain, cut=cut, settings=settings, orgs=orgs,
                           now=now, out=out)
        except Exception:
            log.exception("DMARC report for %s failed; kept for the next run", domain)
    if out.messages and on_enqueued is not None:
        on_enqueued()
    return out


def _report_domain(store: Store, spool: Spool, lookup: Lookup, domain: str, *, cut: int,
                   settings: ReportSettings, orgs: OrgDomains, now: float, out: RunReport) -> None:
    with store.transaction(read_only=True) as session:
        first = session.scalar(select(func.min(DmarcEvaluation.ts)).where(
            DmarcEvaluation.policy_domain == domain, DmarcEvaluation.ts < cut))
    if first is None:
        return
    begin = int(first // settings.interval * settings.interval)
    end = int(begin + settings.interval)
    with store.transaction(read_only=True) as session:
        rows = list(session.scalars(select(DmarcEvaluation).where(
            DmarcEvaluation.policy_domain == domain, DmarcEvaluation.ts >= begin,
            DmarcEvaluation.ts < end).order_by(DmarcEvaluation.id).limit(settings.max_records)))
        session.expunge_all()
    if not rows:
        return
    addresses = _addresses(rows[-1].rua)
    budget = Budget(lookup, seconds=30.0, per_lookup=5.0)
    meta = ReportMeta(org_name=settings.org_name, email=settings.sender,
                      report_id=f"{domain}.{begin}.{uuid.uuid4().hex[:12]}", begin=begin, end=end - 1)
    xml = build_report(rows, policy_domain=domain, meta=meta)
    targets: list[str] = []
    for address, limit in addresses:
        try:
            ok = authorised(budget, policy_domain=domain, address=address, orgs=orgs)
        except DnsTempError:
            raise  # the rows stay; the next run asks again
        if not ok:
            log.info("DMARC report for %s not sent to <%s>: that domain does not accept "
                     "reports for it (RFC 7489 section 7.1)", domain, address)
            out.refused.append((domain, address))
            continue
        if limit and len(gzip.compress(xml, mtime=0)) > limit:
            log.info("DMARC report for %s too big for <%s> (!%d)", domain, address, limit)
            continue
        targets.append(address)
    ids = [r.id for r in rows]
    written: list[str] = []
    try:
        with store.transaction() as session:
            for address in targets:
                data, subject = report_message(xml, policy_domain=domain, meta=meta,
                                               sender=settings.sender, recipient=address,
                                               hostname=settings.hostname, now=now)
                written.append(queue_report(session, spool, data=data, subject=subject,
                                            sender=settings.sender, recipient=address,
                                            transport=settings.transport, now=now))
                out.messages += 1
            session.execute(delete(DmarcEvaluation).where(DmarcEvaluation.id.in_(ids)))
    except BaseException:
        for path in written:
            spool.remove(path)
        raise
    out.reports += 1
    log.info("DMARC aggregate report %s for %s (%d messages) queued to %s", meta.report_id, domain,
             len(rows), ", ".join(f"<{a}>" for a in targets) or "nobody")


def queue_report(session: Session, spool: Spool, *, data: bytes, subject: str, sender: str,
                 recipient: str, transport: str, now: float) -> str:
    """One report mail spooled and queued in the caller's transaction; its spool path (the
    caller removes it if the transaction fails)."""
    msgid = str(uuid.uuid4())
    path = spool.write(msgid, data)
    queue_store.enqueue(session, NewMessage(
        msgid=msgid, envelope=Envelope(sender=sender, recipients=(recipient,)), path=path,
        size=len(data), subject=subject, received=now, transport=transport), now=now)
    return path


def _addresses(rua: str) -> list[tuple[str, int]]:
    try:
        return [(str(a), int(n)) for a, n in json.loads(rua or "[]")]
    except (ValueError, TypeError):
        return []


class ReportSender(Periodic):
    """Housekeeping: looks every `interval` seconds for finished report periods."""

    thread_name = "dmarc-reports"
    tick_at_start = True

    def __init__(self, store: Store, spool: Spool, *, config: Callable[[], Any],
                 lookup: Callable[[Any], Lookup], interval: float = 600.0,
                 on_enqueued: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.store, self.spool = store, spool
        self._config = config
        self._lookup = lookup
        self.interval = interval
        self._on_enqueued = on_enqueued
        self._clock = clock
        self._orgs = OrgDomains()
        self.last: RunReport | None = None

    def tick(self) -> RunReport | None:
        config = self._config()
        section = config.mailauth
        if not section.aggregate_reports:
            return None
        settings = report_settings(config)
        try:
            self.last = send_reports(self.store, self.spool, self._lookup(section),
                                     settings=settings, now=self._clock(), orgs=self._orgs,
                                     on_enqueued=self._on_enqueued)
        except Exception:
            log.exception("DMARC report run failed")
            return None
        return self.last


def prune(store: Store, *, before: float) -> int:
    """Drop evaluations older than `before` (reports that could never be sent)."""
    with store.transaction() as session:
        result = session.execute(delete(DmarcEvaluation).where(DmarcEvaluation.ts < before))
        return int(getattr(result, "rowcount", 0) or 0)


def pending(store: Store, domains: Iterable[str] | None = None) -> int:
    with store.transaction(read_only=True) as session:
        query = select(func.count()).select_from(DmarcEvaluation)
        if domains is not None:
            query = query.where(DmarcEvaluation.policy_domain.in_(list(domains)))
        return int(session.scalar(query) or 0)
