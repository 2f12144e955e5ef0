"""`appliance doctor`: checks a node's set-up and says what is wrong and how to fix it."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from cryptography import x509
from sqlalchemy import func, select, text

from appliance.config.document import ConfigError, parse
from appliance.config.schema import Config
from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, NodeInfo, QueueEntry
from appliance.db.models_bounce import BounceNotice
from appliance.delivery.routing import Resolver, RouteError
from appliance.errors import StoreUnavailable
from appliance.settings import Settings

Level = Literal["ok", "warn", "fail"]
MIN_PG_VERSION = 130000  # server_version_num of the oldest PostgreSQL the node is tested on
CERT_WARN_DAYS = 21
NOTICE_LATE = 600.0  # seconds a bulk bounce's DSN may be owed before doctor warns


@dataclasses.dataclass(frozen=True)
class Finding:
    level: Level
    check: str
    message: str
    fix: str = ""

    def line(self) -> str:
        tail = f"\n      fix: {self.fix}" if self.fix and self.level != "ok" else ""
        return f"{self.level.upper():4}  {self.check}: {self.message}{tail}"


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Edges:
    """What the checks reach outside the process; tests pass their own."""

    resolver: Resolver | None
    connect: Callable[[str, int, float], None]
    disk_usage: Callable[[Path], DiskUsage]
    clock: Callable[[], float] = time.time
    ntp_synchronized: Callable[[], bool | None] = lambda: _timedatectl_ntp()


def real_edges() -> Edges:
    from appliance.delivery.routing import DnsResolver

    def connect(host: str, port: int, timeout: float) -> None:
        with socket.create_connection((host, port), timeout=timeout):
            pass

    return Edges(resolver=DnsResolver(timeout=3.0), connect=connect,
                 disk_usage=lambda p: DiskUsage(*shutil.disk_usage(p)))


def check_all(settings: Settings, config: Config, store: Store | None, edges: Edges) -> list[Finding]:
    findings = [*check_data_dir(settings), *check_disk(settings, edges)]
    if store is not None:
        findings += [*check_store(store), *check_clock(store, edges),
                     *check_bounce_notices(store, edges)]
    findings += [*check_dns(config, edges), *check_relays(config, edges),
                 *check_certificates(settings, config, edges.clock), *check_open_relay(config)]
    return findings


def check_data_dir(settings: Settings) -> list[Finding]:
    data = settings.data_dir
    if not data.is_dir():
        return [Finding("fail", "data dir", f"{data} does not exist",
                        f"create it: install -d -m 0750 {data} (appliance run creates it too)")]
    out: list[Finding] = []
    if not os.access(data, os.W_OK | os.X_OK):
        out.append(Finding("fail", "data dir", f"{data} is not writable by uid {os.geteuid()}",
                           f"chown the node's user {data} (and everything below it)"))
    mode = data.stat().st_mode
    if mode & stat.S_IWOTH:
        out.append(Finding("fail", "data dir", f"{data} is world-writable ({stat.filemode(mode)})",
                           f"chmod o-w {data}"))
    spool = settings.spool_dir
    if spool.is_dir() and spool.stat().st_mode & (stat.S_IROTH | stat.S_IXOTH):
        out.append(Finding("warn", "spool", f"{spool} is readable by every user: it holds mail",
                           f"chmod o-rx {spool}"))
    for key in sorted(settings.tls_dir.glob("*.key")) if settings.tls_dir.is_dir() else []:
        if key.stat().st_mode & 0o077:
            out.append(Finding("fail", "tls key", f"{key} is readable by others",
                               f"chmod 0600 {key}"))
    return out or [Finding("ok", "data dir", f"{data} is writable and private")]


def check_disk(settings: Settings, edges: Edges) -> list[Finding]:
    where = settings.data_dir if settings.data_dir.exists() else settings.data_dir.parent
    usage = edges.disk_usage(where)
    share = usage.free / usage.total if usage.total else 0.0
    what = f"{usage.free / 2**30:.1f} GiB free ({share:.0%}) on the data dir's file system"
    fix = "free space or move the data dir: with a full disk SMTP answers 451 to every message"
    if usage.free < 100 * 2**20 or share < 0.01:
        return [Finding("fail", "disk", what, fix)]
    if usage.free < 2**30 or share < 0.10:
        return [Finding("warn", "disk", what, fix)]
    return [Finding("ok", "disk", what)]


def check_store(store: Store) -> list[Finding]:
    try:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            version = (int(conn.scalar(text("SHOW server_version_num")) or 0)
                       if store.engine.dialect.name == "postgresql" else None)
    except Exception as exc:
        return [Finding("fail", "store", f"cannot reach the store: {exc.__class__.__name__}: {exc}",
                        "check --database, that the server runs and accepts this user")]
    if version is None:
        return [Finding("ok", "store", "SQLite store reachable")]
    return [postgres_version(version)]


def postgres_version(version_num: int) -> Finding:
    shown = f"{version_num // 10000}.{version_num % 10000}"
    if version_num < MIN_PG_VERSION:
        return Finding("fail", "postgresql", f"server version {shown} is older than "
                       f"{MIN_PG_VERSION // 10000}", "upgrade the PostgreSQL server")
    return Finding("ok", "postgresql", f"server version {shown}")


def check_clock(store: Store, edges: Edges) -> list[Finding]:
    out: list[Finding] = []
    with store.transaction(read_only=True) as session:
        newest = max(float(session.scalar(select(func.max(QueueEntry.ts0))) or 0),
                     float(session.scalar(select(func.max(HistoryEntry.ts))) or 0))
    now = edges.clock()
    if newest > now + 60:
        out.append(Finding("fail", "clock", f"the clock is {newest - now:.0f} s behind the "
                           "newest timestamp in the store (it went backwards)",
                           "set the time (chrony/systemd-timesyncd); retries and graphs follow it"))
    synced = edges.ntp_synchronized()
    if synced is False:
        out.append(Finding("warn", "clock", "the system clock is not synchronized (NTP)",
                           "enable systemd-timesyncd or chrony"))
    return out or [Finding("ok", "clock", "not behind the store" + (
        "; NTP synchronized" if synced else ""))]


def check_bounce_notices(store: Store, edges: Edges) -> list[Finding]:
    """DSNs of bulk bounces still owed long after the bounce: the housekeeping process's
    bounce notifier writes them within seconds while it runs."""
    with store.transaction(read_only=True) as session:
        count, oldest = session.execute(
            select(func.count(), func.min(BounceNotice.created))).one()
    late = edges.clock() - float(oldest) if count else 0.0
    if late > NOTICE_LATE:
        return [Finding("warn", "bounce notices",
                        f"{count} DSNs of bulk bounces are owed, the oldest for {late / 60:.0f} "
                        "minutes", "is the node running? the node log names what stops its "
                        "housekeeping process from writing them ('bounce notices: ...')")]
    return [Finding("ok", "bounce notices", f"{count} DSNs owed" if count else "no DSN owed")]


def check_dns(config: Config, edges: Edges) -> list[Finding]:
    names = sorted({_host(t.nexthop) for t in config.transports if t.nexthop} - {""})
    names = [n for n in names if not _is_ip(n)]
    mx_routed = any(not t.nexthop for t in config.transports)
    if not names and not mx_routed:
        return [Finding("ok", "dns", "no lookups needed (next hops are addresses)")]
    if edges.resolver is None:
        return [Finding("fail", "dns", "no resolver configured", "set nameservers in /etc/resolv.conf")]
    out: list[Finding] = []
    for name in names:
        try:
            if not asyncio.run(edges.resolver.addresses(name)):
                raise RouteError(f"{name} has no A/AAAA records", permanent=True)
        except RouteError as exc:
            out.append(Finding("fail", "dns", f"next hop {name}: {exc}",
                               "fix the name in [[transports]] nexthop or the DNS records"))
    return out or [Finding("ok", "dns", "next hops resolve" if names else
                           "MX routing: lookups happen per destination")]


def check_relays(config: Config, edges: Edges) -> list[Finding]:
    out: list[Finding] = []
    for transport in config.transports:
        if not transport.nexthop:
            continue
        host, port = _host(transport.nexthop), int(transport.nexthop.rpartition(":")[2])
        try:
            edges.connect(host, port, min(transport.connect_timeout, 5.0))
            out.append(Finding("ok", "relay", f"transport {transport.id}: {transport.nexthop} answers"))
        except OSError as exc:
            out.append(Finding("fail", "relay", f"transport {transport.id}: cannot connect to "
                               f"{transport.nexthop} ({exc.strerror or exc})",
                               "check the next hop runs and the firewall lets the node through; "
                               "mail to it waits in DEFER meanwhile"))
    return out


def check_certificates(settings: Settings, config: Config,
                       clock: Callable[[], float]) -> list[Finding]:
    paths = {Path(p) for p in [config.api.tls_cert, *(lst.tls_cert for lst in config.listeners)] if p}
    if settings.tls_dir.is_dir():
        paths |= set(settings.tls_dir.glob("*.crt"))
    out = [certificate(path, clock()) for path in sorted(paths)]
    return out or [Finding("ok", "certificate", "none yet (a self-signed one is made at start)")]


def certificate(path: Path, now: float) -> Finding:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        return Finding("fail", "certificate", f"{path}: cannot be read ({exc})",
                       "point the config at a readable PEM certificate")
    ends = cert.not_valid_after_utc.timestamp()
    when = datetime.datetime.fromtimestamp(ends, datetime.timezone.utc).date().isoformat()
    if ends <= now:
        return Finding("fail", "certificate", f"{path} expired on {when}",
                       "renew it (or delete the node's self-signed one: a new one is made at start)")
    if ends - now < CERT_WARN_DAYS * 86400:
        return Finding("warn", "certificate", f"{path} expires on {when}", "renew it soon")
    return Finding("ok", "certificate", f"{path} valid until {when}")


def check_open_relay(config: Config) -> list[Finding]:
    """What [relay] and the listeners let strangers do (appliance.policy.relay applies it)."""
    out: list[Finding] = []
    relay = config.relay
    for text in relay.mynetworks:
        network = ipaddress.ip_network(text, strict=False)
        if network.prefixlen == 0:
            out.append(Finding("fail", "open relay", f"relay.mynetworks holds {text}: every "
                               "client may relay to any domain", "list only your own subnets"))
        elif network.is_global and network.num_addresses > 65536:
            out.append(Finding("warn", "open relay", f"relay.mynetworks holds {text}, a public "
                               f"network of {network.num_addresses} addresses",
                               "list only the hosts that submit mail through this node"))
    if relay.address_literals:
        out.append(Finding("warn", "open relay", "relay.address_literals = true: clients may "
                           "name any host as the destination, the node itself included",
                           "set relay.address_literals = false"))
    exposed = [lst for lst in config.listeners
               if not _is_loopback(lst.address) and not lst.require_auth]
    for listener in exposed:
        if listener.script and "rcpt_to" in config.scripts.get(listener.script, ""):
            out.append(Finding("warn", "open relay", f"listener {listener.id} on "
                               f"{listener.address}:{listener.port} takes mail from other hosts "
                               f"and its script {listener.script!r} decides relaying itself",
                               "make sure the script's rcpt_to accepts other domains only from "
                               "authenticated clients"))
    return out or [Finding("ok", "open relay", "relaying is limited to authenticated clients, "
                           "relay.mynetworks and relay.domains")]


def running_config(settings: Settings, store: Store | None) -> Config:
    """The revision the node runs (from its store), else the --config file, else the defaults."""
    if store is not None:
        from appliance.cluster.watcher import fetch

        with store.transaction(read_only=True) as session:
            serial = session.scalar(select(NodeInfo.value).where(NodeInfo.key == "serial"))
        if serial is not None:
            try:
                return parse(fetch(store, str(serial))[1])
            except StoreUnavailable:
                pass  # no revision yet: the node seeds one from the file at its first start
    if settings.config_path is not None:
        return parse(Path(settings.config_path).read_text(encoding="utf-8"))
    return Config()


def report(findings: Sequence[Finding]) -> str:
    return "\n".join(f.line() for f in findings)


def main(settings: Settings, *, edges: Edges | None = None) -> int:
    """Prints every finding; exit code 1 when any check failed, else 0."""
    store = _open(settings)
    try:
        try:
            config = running_config(settings, store)
        except ConfigError as exc:
            print(Finding("fail", "config", str(exc), "appliance config edit").line())
            return 1
        findings = check_all(settings, config, store, edges or real_edges())
    finally:
        if store is not None:
            store.dispose()
    print(report(findings))
    return 1 if any(f.level == "fail" for f in findings) else 0


def _open(settings: Settings) -> Store | None:
    url = settings.database_url
    if url.startswith("sqlite") and not Path(url.split("///", 1)[-1]).exists():
        return None  # nothing to check yet (and do not create an empty store)
    return Store(url)


def _host(hostport: str) -> str:
    return hostport.rpartition(":")[0].strip("[]")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _is_loopback(address: str) -> bool:
    return _is_ip(address) and ipaddress.ip_address(address).is_loopback


def _timedatectl_ntp() -> bool | None:
    if shutil.which("timedatectl") is None:
        return None
    try:
        done = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                              capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = done.stdout.strip()
    return {"yes": True, "no": False}.get(value)
