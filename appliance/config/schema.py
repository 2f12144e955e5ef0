"""The configuration document's schema (TOML), validated with pydantic.

Boot settings (paths, database URL) are not here: see appliance.settings.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from appliance.mailauth.keys import check_domain, check_selector


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_hostport(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT")
    return value


class NodeSection(_Section):
    name: str = "node1"
    hostname: str = "localhost"  # used in the banner, Received headers and HELO


class Listener(_Section):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    address: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    max_message_size: int = Field(default=25 * 1024 * 1024, ge=1024)
    max_recipients: int = Field(default=1000, ge=1)
    starttls: bool = False
    tls_cert: str = ""  # PEM paths; empty = the node's self-signed certificate
    tls_key: str = ""
    auth: bool = False  # offer AUTH PLAIN/LOGIN (after STARTTLS when starttls is on)
    require_auth: bool = False
    transport: str = "default"  # transport of the entries this listener queues
    script: str = ""  # policy script id (policy)
    # Connection caps (Postfix: smtpd_client_connection_count_limit, process limits), counted
    # per receiving process: with several processes on one listener each takes its share.
    max_connections: int = Field(default=1000, ge=1)
    max_connections_per_address: int = Field(default=50, ge=1)
    pre_command_timeout: float = Field(default=20.0, gt=0)  # greeting -> first command line

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value


class Transport(_Section):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    nexthop: str = ""  # HOST:PORT; empty = MX lookup of the recipient domain
    port: int = Field(default=25, ge=1, le=65535)  # port for MX-routed delivery
    starttls: Literal["none", "opportunistic", "require"] = "opportunistic"
    tls_verify: bool = False
    max_connections: int = Field(default=10, ge=1)  # per destination
    max_messages_per_connection: int = Field(default=100, ge=1)
    connect_timeout: float = Field(default=30.0, gt=0)
    timeout: float = Field(default=120.0, gt=0)

    @field_validator("nexthop")
    @classmethod
    def _nexthop(cls, value: str) -> str:
        return _check_hostport(value) if value else value


class QueueSection(_Section):
    workers: int = Field(default=4, ge=1, le=256)  # mail_queue_threads
    retry_schedule: list[int] = Field(
        default=[60, 300, 900, 1800, 3600, 7200, 14400], min_length=1
    )  # seconds after each failed attempt; the last repeats
    lifetime: int = Field(default=5 * 86400, ge=60)  # older entries bounce
    lease: int = Field(default=600, ge=10)  # how long a worker may hold an entry
    poll_interval: float = Field(default=1.0, gt=0, le=60)
    timeline_days: int = Field(default=30, ge=1, le=3650)  # message events (mailTimeline) kept
    # Deleted entries stay restorable (mailTrashRestore) this long; housekeeping purges them
    # after it. 0 purges them at housekeeping's next pass (about a minute).
    trash_hours: float = Field(default=24.0, ge=0, le=24 * 365)
    # Entries per transaction of a bulk action or trash restore/purge (appliance.queue.bulk's
    # DEFAULT_CHUNK and MAX_CHUNK): larger is faster, smaller holds SQLite's write lock shorter.
    bulk_chunk: int = Field(default=10_000, ge=1, le=10_000)

    @field_validator("retry_schedule")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(v <= 0 for v in value):
            raise ValueError("retry intervals must be positive seconds")
        return value


class AlertsSection(_Section):
    """Saved queries with alert thresholds, evaluated by housekeeping."""

    interval: float = Field(default=30.0, ge=0.2, le=3600)  # seconds between evaluations
    mail_to: str = ""  # where alert mails go (a saved query may name its own); "" = no mail
    mail_from: str = ""  # envelope sender of alert mails; "" = the null sender <>
    webhook_timeout: float = Field(default=10.0, gt=0, le=120)


class ApiSection(_Section):
    listen: str = "https://127.0.0.1:8443"
    tls_cert: str = ""
    tls_key: str = ""
    public_url: str = ""  # soap:address in the WSDL; default derived from listen
    max_request_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    auth_failures_before_throttle: int = Field(default=5, ge=1)  # per (address, user)
    auth_failures_per_address: int = Field(default=30, ge=1)  # any user; SMTP AUTH shares both
    auth_window: float = Field(default=60.0, gt=0)  # failures count within this many seconds
    auth_block: float = Field(default=60.0, gt=0)  # how long a throttled key is refused
    # Requests of most operations are small: the inflated body is capped far below
    # max_request_bytes, which only operations carrying files, scripts or config text get.
    max_operation_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_array_items: int = Field(default=10_000, ge=1)  # children of any one element
    max_connections: int = Field(default=256, ge=1)
    # Below the server's worker threads, so that one address cannot hold all of them.
    max_connections_per_address: int = Field(default=16, ge=1)
    header_timeout: float = Field(default=10.0, gt=0)  # TLS handshake + request head, in total
    metrics_loopback_open: bool = False  # /metrics without credentials from 127.0.0.0/8 and ::1
    ready_min_free_bytes: int = Field(default=256 * 1024 * 1024, ge=0)  # /readyz: spool disk
    wsdl_requires_auth: bool = False  # GET /remote/?wsdl without credentials unless true
    # Seconds any one store statement of an API call may run (read at start).
    statement_timeout: float = Field(default=30.0, gt=0, le=3600)


class ConsoleSection(_Section):
    """The web console at `/` on the API listener (appliance.console)."""

    enabled: bool = True  # read at start of the API process
    session_idle: float = Field(default=1800.0, gt=0, le=7 * 86400)  # seconds unused before logout
    # CA bundle the console trusts for the other cluster members' API certificates (empty: the
    # system's); this node's own certificate is trusted as it is, or through this bundle if set.
    ca_file: str = ""


class ClusterSection(_Section):
    """How this node reaches the cluster's shared config store (node-local; see cluster/)."""

    # PostgreSQL URL or libpq DSN; empty = not in a cluster. Its password is redacted for
    # output (appliance.config.secrets).
    dsn: str = Field(default="", json_schema_extra={"secret": "dsn"})
    heartbeat_interval: float = Field(default=2.0, gt=0, le=300)
    poll_interval: float = Field(default=1.0, gt=0, le=300)  # how often new revisions are looked for
    stale_after: float = Field(default=15.0, gt=0)  # a node not seen for this long is "stale"


class RelaySection(_Section):
    """Who may relay (see appliance.policy.relay): mail for `domains` is taken from any client,
    mail for other domains only from authenticated clients and clients in `mynetworks`."""

    # Loopback only, matching the listeners' loopback default. Postfix's default is the host's
    # own subnets; list them here (e.g. "192.0.2.0/24") to let those hosts relay.
    mynetworks: list[str] = ["127.0.0.0/8", "::1/128"]
    # Domains the node takes mail for from anyone; ".example.com" also matches its subdomains.
    domains: list[str] = []
    address_literals: bool = False  # accept recipients like r@[192.0.2.1] (RFC 5321 §4.1.3)

    @field_validator("mynetworks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"mynetworks entry {network!r} is not a network "
                                 "(e.g. 192.0.2.0/24 or 2001:db8::/32)") from None
        return value

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        for domain in value:
            if not _DOMAIN.match(domain):
                raise ValueError(f"relay domain {domain!r} is not a domain name "
                                 "(e.g. example.com, or .example.com for its subdomains)")
        return value


_DOMAIN = re.compile(r"^\.?(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?$")
_SCRIPT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class StatsGraph(_Section):
    """A counter (key patterns with `%`, summed) or a rate() namespace graphed as stat-/rate-<name>."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    key1: str = ""
    key2: str = ""
    key3: str = ""
    rate_ns: str = ""  # instead of a counter: the hits inside this rate() namespace's windows

    @model_validator(mode="after")
    def _one_source(self) -> "StatsGraph":
        if bool(self.key1) == bool(self.rate_ns):
            raise ValueError("a stats graph names either key1 (a counter) or rate_ns")
        return self


class StatsSection(_Section):
    flush_interval: float = Field(default=1.0, gt=0, le=300)  # stat() batch -> store
    graph_interval: float = Field(default=60.0, gt=0, le=3600)  # RRD updates
    rrd_step: Literal[1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60] = 60  # fixed when a graph file is created
    graphs: list[StatsGraph] = []


class SmtpSection(_Section):
    """The SMTP receiver processes (appliance.process): 0 = one per core."""

    processes: int = Field(default=0, ge=0, le=64)


class LogSection(_Section):
    """The node log (appliance.nodelog): size-rotated files under <data_dir>/log/."""

    # Rotate past this size; 0 = never (logrotate renames the file and sends SIGHUP or SIGUSR1).
    max_bytes: int = Field(default=64 * 1024 * 1024)
    backup_count: int = Field(default=20, ge=1, le=200)  # rotated files kept (searchlog opens all)
    # Also to syslog: a socket path (/dev/log) or HOST:PORT (UDP); "" = off.
    syslog: str = Field(default="", pattern=r"^(|/.+|.+:[0-9]{1,5})$")
    stderr: bool = False  # also one line per event on stderr (journald under systemd)
    format: Literal["text", "json"] = "text"  # of the syslog and stderr lines; files stay text

    @field_validator("max_bytes")
    @classmethod
    def _max_bytes(cls, value: int) -> int:
        if value != 0 and value < 1024:
            raise ValueError("max_bytes must be 0 (no rotation) or at least 1024")
        return value


_ALLOW_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


class PolicySection(_Section):
    """What policy scripts may reach. `http_allow` lists http() destinations: "public" (any
    globally routable address: not loopback, private, link-local or reserved), CIDRs or
    addresses ("10.1.2.0/24"), host names ("api.example.com", "*.example.com": that name
    whatever it resolves to). Empty = http() reaches nothing."""

    http_allow: list[str] = ["public"]

    @field_validator("http_allow")
    @classmethod
    def _allow_entries(cls, value: list[str]) -> list[str]:
        out = []
        for entry in value:
            text = entry.strip().lower()
            try:
                text = str(ipaddress.ip_network(text, strict=False))
            except ValueError:
                if text != "public" and not _ALLOW_HOST.match(text):
                    raise ValueError(f"http_allow entry {entry!r} is not 'public', a CIDR, an address "
                                     "or a host name") from None
            out.append(text)
        return out


# RFC 6376 section 5.4.1: the fields a signer should cover (those present are signed).
DKIM_HEADERS = [
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc", "mime-version",
    "content-type", "content-transfer-encoding", "content-id", "content-description",
    "resent-date", "resent-from", "resent-sender", "resent-to", "resent-cc", "resent-message-id",
    "in-reply-to", "references", "list-id", "list-help", "list-unsubscribe", "list-subscribe",
    "list-post", "list-owner", "list-archive",
]
_FIELD_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 section 2.2
# RFC 6376 section 5.4: fields a signature must not cover (changed in transit, or secret).
_DKIM_NEVER = {"return-path", "received", "comments", "keywords", "bcc", "resent-bcc",
               "dkim-signature"}


class DkimDomain(_Section):
    selector: str  # the key that signs this domain's mail (rotation: switch it here)

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        return check_selector(value)


class DkimSection(_Section):
    """Outbound DKIM signing (appliance.mailauth.sign); keys: `appliance dkim keygen`."""

    enabled: bool = True
    # "from": sign mail whose From domain has a key; "script": only what a policy script
    # chooses with dkim_sign(domain, selector).
    sign: Literal["from", "script"] = "from"
    sign_dsn: bool = False  # also the node's own delivery status notifications
    headers: list[str] = DKIM_HEADERS  # fields signed where present
    oversign: list[str] = ["from"]  # signed once more, so a copy added in transit breaks it
    canonicalization: Literal["relaxed/relaxed", "relaxed/simple", "simple/relaxed",
                              "simple/simple"] = "relaxed/relaxed"
    domains: dict[str, DkimDomain] = {}  # per signing domain: the active selector

    @field_validator("headers", "oversign")
    @classmethod
    def _fields(cls, value: list[str]) -> list[str]:
        out = [v.strip().lower() for v in value]
        for name in out:
            if not _FIELD_NAME.match(name):
                raise ValueError(f"{name!r} is not a header field name")
            if name in _DKIM_NEVER:
                raise ValueError(f"the {name} field must not be signed (RFC 6376 section 5.4)")
        return out

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: dict[str, DkimDomain]) -> dict[str, DkimDomain]:
        return {check_domain(k): v for k, v in value.items()}

    @model_validator(mode="after")
    def _from_signed(self) -> "DkimSection":
        if "from" not in self.headers:
            raise ValueError("dkim headers must include from (RFC 6376 section 5.4)")
        return self
class MailAuthSection(_Section):
    """Inbound checks at DATA (SPF, DKIM, DMARC, ARC) and DMARC reports. Off by default: the
    checks look up DNS for every message."""

    enabled: bool = False
    listeners: list[str] = []  # listener ids that check; empty = every listener
    skip_authenticated: bool = True  # SMTP AUTH clients (submission) are not checked
    skip_mynetworks: bool = False  # relay.mynetworks clients are not checked
    authserv_id: str = ""  # of Authentication-Results; empty = node.hostname
    timeout: float = Field(default=10.0, gt=0, le=120)  # all lookups of one message, in total
    dns_timeout: float = Field(default=3.0, gt=0, le=60)  # one lookup
    nameservers: list[str] = []  # "ADDRESS" or "ADDRESS:PORT" ("[v6]:PORT"); empty = the system's
    cache_entries: int = Field(default=10_000, ge=0, le=10_000_000)
    cache_max_ttl: float = Field(default=3600.0, ge=0)
    max_signatures: int = Field(default=5, ge=1, le=50)  # DKIM-Signature fields verified
    min_key_bits: int = Field(default=1024, ge=512, le=16384)
    arc: bool = True  # verify ARC chains (RFC 8617)
    # The default policy when no script decides at DATA (RFC 7489 §6.7):
    reject: bool = True  # p=reject -> 550 5.7.1
    quarantine: bool = True  # p=quarantine (and p=reject when reject = false) -> quarantine
    quarantine_name: str = Field(default="dmarc", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    temperror: Literal["accept", "defer"] = "accept"
    arc_override: bool = False  # accept DMARC failures that carry a passing ARC chain
    # DMARC reports (RFC 7489 §7): aggregate once a day per reporting domain, through the queue.
    aggregate_reports: bool = False
    report_org_name: str = ""  # empty = node.hostname
    report_from: str = ""  # empty = dmarc-noreply@node.hostname
    report_interval: float = Field(default=86400.0, ge=60)  # seconds per report period
    report_max_records: int = Field(default=10_000, ge=1)  # rows per report
    # ruf= (forensic) reports (RFC 7489 §7.3, RFC 6591): one AFRF mail per failing message with
    # its header section (never its body). Off by default: they leak who is on a mailing list.
    forensic_reports: bool = False
    forensic_domains: list[str] = []  # policy domains that may get them; empty = every ruf= domain
    forensic_rate: int = Field(default=10, ge=1, le=100_000)  # reports per domain per interval
    forensic_interval: int = Field(default=3600, ge=60, le=7 * 86400)  # seconds
    # ARC sealing (RFC 8617 §5.1) of checked inbound mail at delivery, with a key of the node's
    # DKIM key store (RSA: §4.1.3 names rsa-sha256 only). Whether the key exists is the node's
    # to check (keys are per node): a node without it refuses the revision.
    arc_seal: bool = False
    arc_domain: str = ""  # d= of the seal; empty = node.hostname
    arc_selector: str = ""  # s=, the key <arc_domain>/<arc_selector> in the key store

    @field_validator("arc_domain")
    @classmethod
    def _arc_domain(cls, value: str) -> str:
        return check_domain(value) if value else ""

    @field_validator("arc_selector")
    @classmethod
    def _arc_selector(cls, value: str) -> str:
        return check_selector(value) if value else ""

    @model_validator(mode="after")
    def _arc_key_named(self) -> "MailAuthSection":
        if self.arc_seal and not self.arc_selector:
            raise ValueError("arc_seal needs arc_selector: the DKIM key that seals "
                             "(`appliance dkim keygen DOMAIN SELECTOR`)")
        return self

    @field_validator("forensic_domains")
    @classmethod
    def _forensic_domains(cls, value: list[str]) -> list[str]:
        out = []
        for entry in value:
            try:
                out.append(check_domain(entry))
            except ValueError as exc:
                raise ValueError(f"forensic_domains: {exc}") from None
        return list(dict.fromkeys(out))

    @field_validator("nameservers")
    @classmethod
    def _nameservers(cls, value: list[str]) -> list[str]:
        for entry in value:
            host, sep, port = entry.rpartition(":")
            if sep and port.isdigit() and (host.startswith("[") or "." in host):
                ipaddress.ip_address(host.strip("[]"))
            else:
                ipaddress.ip_address(entry)
        return value


class Config(_Section):
    node: NodeSection = NodeSection()
    listeners: list[Listener] = [Listener(id="inbound", port=2525)]
    transports: list[Transport] = [Transport(id="default")]
    queue: QueueSection = QueueSection()
    alerts: AlertsSection = AlertsSection()
    api: ApiSection = ApiSection()
    console: ConsoleSection = ConsoleSection()
    cluster: ClusterSection = ClusterSection()
    stats: StatsSection = StatsSection()
    log: LogSection = LogSection()
    smtp: SmtpSection = SmtpSection()
    policy: PolicySection = PolicySection()
    relay: RelaySection = RelaySection()
    dkim: DkimSection = DkimSection()
    mailauth: MailAuthSection = MailAuthSection()
    scripts: dict[str, str] = {}  # policy script id -> Lua source; `listeners[].script` names one

    @field_validator("scripts")
    @classmethod
    def _script_ids(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not _SCRIPT_ID.match(k)]
        if bad:
            raise ValueError(f"script id {bad[0]!r} must be 1-64 of A-Z a-z 0-9 _ . -")
        return value

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> "Config":
        # The document layer checks these itself to point at the offending line.
        if not (info.context or {}).get("defer_references"):
            problems = reference_problems(self)
            if problems:
                raise ValueError(problems[0][1])
        return self

    def authserv_id(self) -> str:
        """The authserv-id of the node's Authentication-Results (RFC 8601 §2.5)."""
        return self.mailauth.authserv_id or self.node.hostname

    def transport(self, transport_id: str) -> Transport:
        for t in self.transports:
            if t.id == transport_id:
                return t
        raise KeyError(transport_id)


def reference_problems(config: Config) -> list[tuple[tuple[str | int, ...], str]]:
    """Cross-references between sections: (location, explanation) for each broken one."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    sections: tuple[tuple[str, Sequence[Transport | Listener]], ...] = (
        ("transports", config.transports), ("listeners", config.listeners))
    for section, entries in sections:
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            if entry.id in seen:
                problems.append(((section, index, "id"), f"{section} id {entry.id!r} is used twice"))
            seen.add(entry.id)
    transport_ids = {t.id for t in config.transports}
    for index, listener in enumerate(config.listeners):
        if listener.transport not in transport_ids:
            problems.append((("listeners", index, "transport"),
                             f"listener {listener.id!r} names unknown transport {listener.transport!r}"))
        if listener.script and listener.script not in config.scripts:
            problems.append((("listeners", index, "script"),
                             f"listener {listener.id!r} names unknown script {listener.script!r}"))
    return problems
