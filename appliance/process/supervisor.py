"""`appliance run`: prepares the node, binds the SMTP sockets, starts and watches its children.

Children (appliance.process.child): N SMTP receivers accepting on the sockets bound here, one
delivery process, one API process, one housekeeping process. A child that dies is started
again after a back-off (appliance.process.backoff). SIGTERM drains in order: receivers stop
accepting and finish their sessions, then delivery finishes or releases its leases, then the
API and housekeeping. SIGHUP imports a changed --config file as a new revision and makes every
child look at the config store now. A change of the listeners (or the hostname) binds the new
sockets here and rolls the receivers onto them.

Children are forked from the fork server (appliance.process.forkserver), which the supervisor
starts before anything else, once it has imported what the children use: their modules' pages
stay shared. `--spawn exec` (or a fork server that is gone) starts each child as a new
interpreter, `python -m appliance child ROLE`, instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Union

from appliance.cluster.shared import StoreRouter
from appliance.config import revisions
from appliance.config.holder import Running
from appliance.config.schema import Config, Listener
from appliance.cluster.watcher import initial_running
from appliance.db.engine import Store
from appliance.nodelog import NodeLog, syslog_address
from appliance.process import child as child_mod
from appliance.process import forkserver
from appliance.process.backoff import Backoff, RestartState, next_restart
from appliance.process.forkserver import Forked, ForkServer
from appliance.process.logpipe import PipeReader
from appliance.sdnotify import Notifier
from appliance.stats import metrics
from appliance.settings import Settings

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 60.0  # per drain step; a child still there after it is killed
SPAWN_METHODS = ("fork", "exec")

ChildProcess = Union["subprocess.Popen[bytes]", Forked]


@dataclasses.dataclass(eq=False)
class Slot:
    """One child position (e.g. "smtp 2"): the process in it now and its restart state."""

    role: str
    index: int = 0
    proc: ChildProcess | None = None
    started: float = 0.0
    restart_at: float | None = None
    state: RestartState = dataclasses.field(default_factory=RestartState)
    ready: bool = False
    retiring: bool = False  # rolled off: not restarted when it exits

    @property
    def name(self) -> str:
        return child_mod.title(self.role, self.index)


@dataclasses.dataclass
class Bound:
    listener: Listener
    sock: socket.socket

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])


def receiver_count(config: Config) -> int:
    return config.smtp.processes or os.cpu_count() or 1


def listening_changed(old: Config, new: Config) -> bool:
    """Whether receivers must be rolled: what they bake into their sessions changed."""
    return old.listeners != new.listeners or old.node.hostname != new.node.hostname \
        or receiver_count(old) != receiver_count(new)


class Supervisor:
    def __init__(self, settings: Settings, *, backoff: Backoff = Backoff(),
                 spawn: str = "fork") -> None:
        if spawn not in SPAWN_METHODS:
            raise ValueError(f"spawn must be one of {SPAWN_METHODS}, not {spawn!r}")
        self.settings = settings
        self.backoff = backoff
        self.spawn = spawn
        self._forks: ForkServer | None = None
        self.run_dir = settings.data_dir / "run"
        self._metrics: metrics.Instruments | None = None
        self._router: StoreRouter | None = None
        self.slots: list[Slot] = []
        self.bound: dict[str, Bound] = {}
        self.api_url = ""
        self.api_port = 0
        self.serial = ""
        self.config = Config()
        self.store: Store | None = None
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = False
        self._hup = False
        self._config_poke = False
        self._ports_written: dict[str, Any] | None = None
        self._nodelog: NodeLog | None = None
        self.notifier = Notifier()  # systemd Type=notify (a no-op without $NOTIFY_SOCKET)
        self._reopen_log = False
        self._last_ping = 0.0
        self._unbindable: list[Listener] | None = None  # a listener set that could not bind
        self._refused: dict[str, Any] | None = None  # ... as published in ports.json

    # -- preparing -----------------------------------------------------------------------
    def prepare(self) -> str | None:
        """Directories, schema, serial, stale leases, first admin, config seed; returns a new
        admin password (printed once)."""
        from appliance.compose import prepare_store

        self.store, self.serial, password = prepare_store(self.settings, self.run_dir)
        (self.run_dir / "ports.json").unlink(missing_ok=True)
        self.config = self._read_config(file_text=self._file_text())
        return password

    def _file_text(self) -> str | None:
        path = self.settings.config_path
        return Path(path).read_text(encoding="utf-8") if path is not None else None

    def _read_config(self, *, file_text: str | None) -> Config:
        from appliance.compose import apply_overrides

        assert self.store is not None
        if self._router is None:  # one for the node's life: the shared store is opened once
            self._router = StoreRouter(self.store)
        running: Running = initial_running(self._router, self.serial, file_text=file_text)
        return apply_overrides(running.config, self.settings)

    # -- running -------------------------------------------------------------------------
    def run(self) -> int:
        # Every child writes its instruments into this folder; /metrics sums them. Chosen
        # before prometheus_client is imported (by the fork server's preload too).
        metrics.prepare_multiprocess(self.run_dir / "metrics")
        self._start_forkserver()  # first: no thread may exist when it forks
        self._start_log()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGUSR1, self._on_usr1)
        try:
            self._bind_all()
            self.slots = self._initial_slots()
            for slot in self.slots:
                self._spawn(slot)
            log.info("node %s supervising %d processes", self.serial, len(self.slots))
            self._loop()
        finally:
            self._drain()
            self._write_ports(final=True)
            if self._forks is not None:
                self._forks.close()
            if self._router is not None:
                self._router.close()
            if self.store is not None:
                self.store.dispose()
            if self._nodelog is not None:
                self._nodelog.stop()
        return 0

    def _start_forkserver(self) -> None:
        if self.spawn != "fork":
            return
        if not forkserver.become_subreaper():
            log.warning("not a child subreaper: children start as new interpreters")
            return
        try:
            forkserver.preload(self.settings.database_url)
            # No open store connection may be inherited (SQLite's rule across fork(): its
            # locks belong to the process); they are opened again when next used.
            if self._router is not None:
                self._router.close()
            if self.store is not None:
                self.store.dispose()
            self._forks = ForkServer(child_mod.run_forked)
        except Exception as exc:
            log.error("no fork server (%s): children start as new interpreters", exc)
            self._forks = None

    def _start_log(self) -> None:
        section = self.config.log
        self._nodelog = NodeLog(self.settings.log_dir, max_bytes=section.max_bytes,
                                backup_count=section.backup_count,
                                syslog_address=syslog_address(section.syslog),
                                hostname=self.config.node.hostname,
                                line_format=section.format, stderr=section.stderr)
        self._nodelog.start()
        try:
            import setproctitle

            setproctitle.setproctitle("appliance supervisor")
        except ImportError:
            pass

    def _on_stop(self, _signum: int, _frame: Any) -> None:
        self._stopping = True
        self._wake.set()

    def _on_hup(self, _signum: int, _frame: Any) -> None:
        self._hup = True
        self._reopen_log = True  # logrotate's postrotate may send SIGHUP
        self._wake.set()

    def _on_usr1(self, _signum: int, _frame: Any) -> None:
        self._reopen_log = True
        self._wake.set()

    def _initial_slots(self) -> list[Slot]:
        slots = [Slot("api"), Slot("housekeeping"), Slot("delivery")]
        slots += [Slot("smtp", i + 1) for i in range(receiver_count(self.config))]
        return slots

    def _loop(self) -> None:
        next_config_look = time.monotonic() + self.config.cluster.poll_interval
        while not self._stopping:
            self._wake.wait(0.1)
            self._wake.clear()
            if self._stopping:
                break
            self._watchdog()
            if self._reopen_log and self._nodelog is not None:
                self._reopen_log = False
                self._nodelog.reopen()
            if self._hup:
                self._hup = False
                self.notifier.reloading()
                self._reload(from_file=True)
                self.notifier.ready()
            elif self._config_poke or time.monotonic() >= next_config_look:
                self._config_poke = False
                self._reload(from_file=False)
                next_config_look = time.monotonic() + self.config.cluster.poll_interval
            self._reap()
            self._reap_orphans()

    def _watchdog(self) -> None:
        """WATCHDOG=1 at half systemd's interval: the supervisor's loop is alive."""
        interval = self.notifier.watchdog_interval
        now = time.monotonic()
        if interval is not None and now - self._last_ping >= interval:
            self._last_ping = now
            self.notifier.ping()

    def _reap(self) -> None:
        if self._forks is not None and not self._forks.alive():
            log.error("the fork server (pid %d) died: children start as new interpreters",
                      self._forks.pid)
            self._forks = None
        now = time.monotonic()
        with self._lock:
            for slot in list(self.slots):
                proc = slot.proc
                if proc is not None and proc.poll() is not None:
                    code = proc.returncode
                    slot.proc = None
                    metrics.process_exited(proc.pid)
                    if slot.retiring:
                        self.slots.remove(slot)
                        log.info("%s (pid %d) finished after the roll, exit %s", slot.name,
                                 proc.pid, code)
                        continue
                    delay, slot.state = next_restart(self.backoff, slot.state,
                                                     started=slot.started, died=now)
                    slot.restart_at = now + delay
                    slot.ready = False
                    log.error("%s (pid %d) died (%s); restarting in %.1f s", slot.name, proc.pid,
                              _how(code), delay)
                if slot.proc is None and slot.restart_at is not None and now >= slot.restart_at:
                    slot.restart_at = None
                    self._instruments().process_restarts.labels(slot.role).inc()
                    self._spawn(slot)

    def _reap_orphans(self) -> None:
        """Reap descendants re-parented to this subreaper that are none of its children (a
        process a child started, left behind when that child died)."""
        if self._forks is None and self.spawn != "fork":
            return
        with self._lock:
            known = {s.proc.pid for s in self.slots if s.proc is not None}
        if self._forks is not None:
            known.add(self._forks.pid)
        for _ in range(16):
            try:
                found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if found is None or found.si_pid in known:
                return
            os.waitpid(found.si_pid, 0)

    def _instruments(self) -> metrics.Instruments:
        """Made at the first restart, after prepare_multiprocess chose the mode."""
        if self._metrics is None:
            self._metrics = metrics.Instruments()
        return self._metrics

    # -- children ------------------------------------------------------------------------
    def _spawn(self, slot: Slot) -> None:
        read_fd, write_fd = os.pipe()
        fds: dict[str, int] = {}
        if slot.role == "smtp":
            fds = {lid: b.sock.fileno() for lid, b in self.bound.items()}
        try:
            forked = self._fork(slot, write_fd, fds) if self._forks is not None else None
            proc: ChildProcess = forked if forked is not None else \
                self._exec(slot, write_fd, fds)
        finally:
            os.close(write_fd)
        slot.proc, slot.started, slot.ready = proc, time.monotonic(), False

        def on_control(message: dict[str, Any], s: Slot = slot, p: ChildProcess = proc) -> None:
            self._control(s, p, message)

        PipeReader(os.fdopen(read_fd, "rb"), role=slot.name.removeprefix("appliance ").replace(" ", "-"),
                   pid=proc.pid, on_control=on_control).start()
        log.info("started %s as pid %d", slot.name, proc.pid)

    def _fork(self, slot: Slot, log_fd: int, fds: dict[str, int]) -> Forked | None:
        """The child forked by the fork server; None when it is gone (then: exec)."""
        assert self._forks is not None
        names = list(fds)
        request = {"role": slot.role, "index": slot.index, "parent": os.getpid(),
                   "listen": {lid: i + 1 for i, lid in enumerate(names)},
                   "settings": self._child_settings()}
        try:
            return self._forks.spawn(request, [log_fd, *(fds[lid] for lid in names)])
        except (OSError, ValueError) as exc:
            log.error("fork server unusable (%s): children start as new interpreters", exc)
            self._forks = None
            return None

    def _exec(self, slot: Slot, log_fd: int, fds: dict[str, int]) -> subprocess.Popen[bytes]:
        spec = {"log_fd": log_fd, "parent": os.getpid(), "listen": fds}
        env = dict(os.environ)
        env[child_mod.ENV] = json.dumps(spec)
        for name in child_mod.SUPERVISOR_ONLY_ENV:
            env.pop(name, None)  # systemd talks to the supervisor only
        argv = [sys.executable, "-m", "appliance", "--data-dir", str(self.settings.data_dir),
                "--database", self.settings.database_url, "child", slot.role,
                "--index", str(slot.index), *self._flags()]
        return subprocess.Popen(argv, pass_fds=[log_fd, *fds.values()], env=env,
                                stdin=subprocess.DEVNULL, close_fds=True)

    def _child_soap_listen(self) -> str | None:
        soap = self.settings.soap_listen
        if self.api_port and soap is not None:
            # port 0: a restarted API process comes back on the port the first one got
            scheme, _, rest = soap.rpartition("://")
            host = rest.rpartition(":")[0]
            soap = f"{scheme or 'https'}://{host}:{self.api_port}"
        return soap

    def _child_settings(self) -> dict[str, Any]:
        """What a forked child runs with (the same a new interpreter gets as flags)."""
        return {"data_dir": str(self.settings.data_dir),
                "database_url": self.settings.database_url,
                "smtp_listen": self.settings.smtp_listen, "relay": self.settings.relay,
                "soap_listen": self._child_soap_listen(),
                "spool_grace": self.settings.spool_grace}

    def _flags(self) -> list[str]:
        flags: list[str] = []
        if self.settings.smtp_listen is not None:
            host, port = self.settings.smtp_listen
            flags += ["--smtp-listen", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        if self.settings.relay is not None:
            flags += ["--relay", f"{self.settings.relay[0]}:{self.settings.relay[1]}"]
        soap = self._child_soap_listen()
        if soap is not None:
            flags += ["--soap-listen", soap]
        flags += ["--spool-sweep-grace", repr(self.settings.spool_grace)]
        return flags

    def _control(self, slot: Slot, proc: ChildProcess, message: dict[str, Any]) -> None:
        kind = message.get("ctl")
        if kind == "ready":
            with self._lock:
                if slot.proc is proc:
                    slot.ready = True
                if "api_url" in message:
                    self.api_url = str(message["api_url"])
                    self.api_port = int(message["api_port"])
            self._write_ports()
        elif kind == "config":
            self._config_poke = True
            self._wake.set()

    def _write_ports(self, *, final: bool = False) -> None:
        """run/ports.json once every child is ready (and again when listeners change)."""
        path = self.run_dir / "ports.json"
        with self._lock:
            if final:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                return
            if self._ports_written is None and not all(s.ready for s in self.slots if not s.retiring):
                return  # the first write says "ready": every child is
            ports = {"smtp": {lid: b.port for lid, b in self.bound.items()},
                     "refused": self._refused,
                     "api_url": self.api_url, "api_port": self.api_port,
                     "pid": os.getpid(),
                     "children": {s.name: s.proc.pid for s in self.slots if s.proc is not None}}
            if ports == self._ports_written:
                return
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(ports, indent=1))
            os.replace(tmp, path)
            first = self._ports_written is None
            self._ports_written = ports
        if first:
            smtp = " ".join(f"{lid}={b.listener.address}:{b.port}" for lid, b in self.bound.items())
            log.info("node %s ready: smtp %s api %s", self.serial, smtp, self.api_url)
            self.notifier.ready(f"smtp {smtp} api {self.api_url}")

    # -- listeners -----------------------------------------------------------------------
    def _bind_all(self) -> None:
        for listener in self.config.listeners:
            self.bound[listener.id] = Bound(listener, _listen(listener))
            log.info("SMTP listener %s on %s:%d", listener.id, listener.address,
                     self.bound[listener.id].port)

    def _reload(self, *, from_file: bool) -> None:
        try:
            new = self._read_config(file_text=self._file_text() if from_file else None)
        except Exception as exc:
            log.error("config not re-read: %s", exc)
            return
        if from_file:
            log.info("SIGHUP: config file re-read; children look at the config store now")
            self._signal_children(signal.SIGHUP)
        old, self.config = self.config, new
        if listening_changed(old, new):
            self._roll(old, new)

    def _roll(self, old: Config, new: Config) -> None:
        """Bind what changed, start new receivers on the new sockets, retire the old ones."""
        before = {lst.id: lst for lst in old.listeners}
        bound: dict[str, Bound] = {}
        try:
            for listener in new.listeners:
                kept = self.bound.get(listener.id)
                same = kept is not None and before.get(listener.id) is not None and \
                    (before[listener.id].address, before[listener.id].port) == \
                    (listener.address, listener.port)
                bound[listener.id] = Bound(listener, kept.sock) if same and kept else \
                    Bound(listener, _listen(listener))
        except OSError as exc:
            for lid, b in bound.items():
                if lid not in self.bound or self.bound[lid].sock is not b.sock:
                    b.sock.close()
            if self._unbindable != new.listeners:  # one line per refused change, not per look
                log.error("listener change not applied, receivers keep the old sockets: %s", exc)
                self._unbindable = new.listeners
                self._refused = {"listeners": [[lst.id, lst.port] for lst in new.listeners],
                                 "error": f"SMTP listeners cannot be bound: {exc.strerror or exc}"}
                self._write_ports()
            self.config = old
            return
        self._unbindable, self._refused = None, None
        with self._lock:
            old_bound, self.bound = self.bound, bound
            old_receivers = [s for s in self.slots if s.role == "smtp" and not s.retiring]
            fresh = [Slot("smtp", i + 1) for i in range(receiver_count(new))]
            for slot in fresh:
                self.slots.append(slot)
                self._spawn(slot)
            for slot in old_receivers:
                slot.retiring = True
                if slot.proc is not None:
                    slot.proc.send_signal(signal.SIGTERM)
                else:
                    self.slots.remove(slot)
        for lid, b in old_bound.items():
            if lid not in bound or bound[lid].sock is not b.sock:
                b.sock.close()
        for lid, b in bound.items():
            log.info("SMTP listener %s on %s:%d (config change)", lid, b.listener.address, b.port)
        self._write_ports()

    def _signal_children(self, sig: int) -> None:
        with self._lock:
            for slot in self.slots:
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.send_signal(sig)

    # -- stopping ------------------------------------------------------------------------
    def _drain(self) -> None:
        self.notifier.stopping()
        log.info("node %s stopping: receivers, then delivery, then the rest", self.serial)
        for b in self.bound.values():
            b.sock.close()  # no new connection waits in a backlog nobody serves
        self.bound = {}
        for roles in (("smtp",), ("delivery",), ("api", "housekeeping")):
            self._stop_roles(roles)
        log.info("node %s stopped", self.serial)

    def _stop_roles(self, roles: tuple[str, ...]) -> None:
        with self._lock:
            procs = [(s, s.proc) for s in self.slots if s.role in roles and s.proc is not None]
            for slot in self.slots:
                if slot.role in roles:
                    slot.restart_at = None
        for _slot, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        for slot, proc in procs:
            try:
                code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                log.info("%s (pid %d) stopped (%s)", slot.name, proc.pid, _how(code))
            except subprocess.TimeoutExpired:
                log.error("%s (pid %d) did not stop in time; killed", slot.name, proc.pid)
                proc.kill()
                proc.wait()
            slot.proc = None


def _listen(listener: Listener) -> socket.socket:
    family = socket.AF_INET6 if ":" in listener.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((listener.address, listener.port))
        sock.listen(1024)
        sock.setblocking(False)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def _how(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"
