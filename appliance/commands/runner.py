"""Runs commands concurrently in threads; output is buffered for polling, bounded in size and time.

A command belongs to the user who started it: any other user's id is "not found". Commands that
nobody polls for `idle_timeout` seconds are stopped and forgotten (reaped).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from appliance.commands.base import CommandContext, CommandSpec, CommandStopped
from appliance.commands.catalog import Catalog
from appliance.errors import ApplianceError, Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)

# What a terminal does with these (termios ISIG): ETX is ^C, EOT is ^D.
_INTERRUPT = b"\x03"
_SIGNALS = {
    "interrupt": "interrupted", "int": "interrupted", "sigint": "interrupted", "2": "interrupted",
    "terminate": "terminated", "term": "terminated", "sigterm": "terminated", "15": "terminated",
    "kill": "killed", "sigkill": "killed", "9": "killed",
    "hangup": "hung up", "hup": "hung up", "sighup": "hung up", "1": "hung up",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    max_output: int = 4 * 1024 * 1024  # bytes one command may produce
    max_runtime: float = 3600.0  # seconds, following commands included
    idle_timeout: float = 120.0  # not polled for this long: stopped and forgotten
    max_per_owner: int = 8
    max_total: int = 64
    chunk: int = 64 * 1024  # poll coalesces output into items of at most this size
    max_input: int = 64 * 1024  # bytes waiting in a command's input


class _Session:
    """One running command: the Terminal its body sees, and the buffer polls drain."""

    def __init__(self, cid: str, owner: str, argv: Sequence[str], cols: int, rows: int,
                 limits: Limits, now: float) -> None:
        self.id, self.owner, self.argv = cid, owner, list(argv)
        self.cols, self.rows = cols, rows
        self._limits = limits
        self._lock = threading.Lock()
        self._out: collections.deque[bytes] = collections.deque()
        self._produced = 0
        self._input: queue.Queue[bytes] = queue.Queue()
        self._input_size = 0
        self._stop = threading.Event()
        self.has_output = threading.Event()
        self.done = threading.Event()
        self.status = "running"
        self.started = self.last_poll = now

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def write(self, data: str | bytes) -> None:
        raw = _crlf(data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data))
        with self._lock:
            if self._stop.is_set():
                raise CommandStopped(self.status)
            room = self._limits.max_output - self._produced
            if len(raw) > room:
                self._append(raw[:room])
                self._append(_crlf(f"\n[output cut at {self._limits.max_output} bytes; command ended]\n".encode()))
                self._end_locked("output limit")
                raise CommandStopped(self.status)
            self._append(raw)

    def _append(self, raw: bytes) -> None:
        if raw:
            self._out.append(raw)
            self._produced += len(raw)
            self.has_output.set()

    def read(self, timeout: float) -> bytes | None:
        if self._stop.is_set():
            raise CommandStopped(self.status)
        try:
            data = self._input.get(timeout=timeout)
        except queue.Empty:
            return None
        if self._stop.is_set():  # woken by end(), not by input
            raise CommandStopped(self.status)
        with self._lock:
            self._input_size -= len(data)
        return data

    def sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise CommandStopped(self.status)

    def push(self, data: bytes) -> None:
        if _INTERRUPT in data:
            self.end("interrupted")
            return
        with self._lock:
            if self._input_size + len(data) > self._limits.max_input:
                raise InvalidInput(f"command {self.id} has {self._input_size} bytes of unread input")
            self._input_size += len(data)
        self._input.put(data)

    def end(self, status: str, *, marker: str = "") -> None:
        with self._lock:
            if marker and not self._stop.is_set() and not self.done.is_set():
                self._append(_crlf(marker.encode()))
            self._end_locked(status)

    def _end_locked(self, status: str) -> None:
        if not self._stop.is_set() and not self.done.is_set():
            self.status = status
        if not self._stop.is_set():
            self._input.put(b"")  # wake a body blocked in read()
        self._stop.set()
        self.has_output.set()  # wake a waiting poll

    def drain(self) -> list[bytes]:
        with self._lock:
            chunks, size, current = [], 0, bytearray()
            while self._out:
                piece = self._out.popleft()
                if current and size + len(piece) > self._limits.chunk:
                    chunks.append(bytes(current))
                    current, size = bytearray(), 0
                current += piece
                size += len(piece)
            if current:
                chunks.append(bytes(current))
            if not self.done.is_set():
                self.has_output.clear()
            return chunks

    def finish(self, status: str) -> None:
        with self._lock:
            if self.status == "running":
                self.status = status
            self._stop.set()
            self.done.set()
            self.has_output.set()


class Runner:
    """The node's commands. `start()`/`stop()` run the reaper; the rest serve the API calls."""

    def __init__(self, catalog: Catalog, context: CommandContext, *, limits: Limits = Limits(),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.catalog, self.context, self.limits = catalog, context, limits
        self._now = monotonic
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._halt = threading.Event()
        self._reaper: threading.Thread | None = None

    def run(self, owner: str, argv: Sequence[str], *, cols: int = 80, rows: int = 24) -> str:
        """Validate argv, start the command in its own thread, and return its id at once."""
        spec, args = self.catalog.parse(argv)
        cols, rows = _check_size(cols, rows)
        with self._lock:
            self._check_capacity(owner)
            cid = secrets.token_hex(8)
            session = _Session(cid, owner, argv, cols, rows, self.limits, self._now())
            self._sessions[cid] = session
        thread = threading.Thread(target=self._body, args=(spec, args, session),
                                  name=f"command-{spec.name}-{cid}", daemon=True)
        thread.start()
        # Not the arguments: a searchlog would find its own line (they are in the audit record).
        log.info("command %s (%s) started by %s", cid, spec.name, owner)
        return cid

    def _check_capacity(self, owner: str) -> None:
        # Ended commands count until their output was read or they were reaped: their buffers
        # are memory too (at most max_output each).
        held = list(self._sessions.values())
        if len(held) >= self.limits.max_total:
            raise Conflict(f"too many commands on this node (limit {self.limits.max_total})")
        if sum(s.owner == owner for s in held) >= self.limits.max_per_owner:
            raise Conflict(f"too many commands for {owner} (limit {self.limits.max_per_owner}); "
                           "poll them to their end or stop them")

    def _body(self, spec: CommandSpec, args: Any, session: _Session) -> None:
        status = "exit 0"
        try:
            spec.run(self.context, args, session)
        except CommandStopped:
            pass
        except ApplianceError as exc:
            status = "exit 1"
            _write_quietly(session, f"{spec.name}: {exc}\n")
        except Exception:  # a bug in a command must not take the node down, but is logged
            log.exception("command %s (%s) failed", session.id, spec.name)
            status = "exit 1"
            _write_quietly(session, f"{spec.name}: internal error (see the node's log)\n")
        session.finish(status)
        log.info("command %s ended: %s", session.id, session.status)

    def poll(self, owner: str, cid: str, *, wait: float = 0.0) -> list[bytes]:
        """Output produced since the last poll; NotFound once ended and everything was read."""
        session = self._get(owner, cid)
        session.last_poll = self._now()
        if wait > 0:
            session.has_output.wait(wait)
        ended = session.done.is_set()  # read before draining: a write always precedes done
        chunks = session.drain()
        if ended and not chunks:
            with self._lock:
                self._sessions.pop(cid, None)
            raise NotFound(f"command {cid} has ended ({session.status})")
        return chunks

    def push(self, owner: str, cid: str, data: bytes) -> None:
        self._live(owner, cid).push(data)

    def signal(self, owner: str, cid: str, signal: str) -> None:
        status = _SIGNALS.get(signal.strip().lower())
        if status is None:
            raise InvalidInput(f"unknown signal {signal!r}; use interrupt, terminate, kill or hangup")
        self._live(owner, cid).end(status)

    def termsize(self, owner: str, cid: str, cols: int, rows: int) -> None:
        session = self._live(owner, cid)
        session.cols, session.rows = _check_size(cols, rows)

    def end(self, owner: str, cid: str) -> None:
        """commandStop: the command ends; what it wrote can still be polled."""
        self._get(owner, cid).end("stopped")

    def _get(self, owner: str, cid: str) -> _Session:
        with self._lock:
            session = self._sessions.get(cid)
        if session is None or session.owner != owner:
            raise NotFound(f"no command {cid!r}")
        return session

    def _live(self, owner: str, cid: str) -> _Session:
        session = self._get(owner, cid)
        if session.stopped:
            raise NotFound(f"command {cid} has ended ({session.status})")
        return session

    def reap(self) -> list[str]:
        """End commands past their time limit; forget those nobody polled lately. Returns ids forgotten."""
        now, forgotten = self._now(), []
        with self._lock:
            sessions = list(self._sessions.values())
        for s in sessions:
            if not s.stopped and now - s.started > self.limits.max_runtime:
                s.end("time limit", marker=f"\n[command ended: ran longer than {self.limits.max_runtime:g} s]\n")
            if now - s.last_poll > self.limits.idle_timeout:
                s.end("abandoned")
                with self._lock:
                    self._sessions.pop(s.id, None)
                forgotten.append(s.id)
                log.info("command %s reaped: not polled for %.0f s", s.id, now - s.last_poll)
        return forgotten

    def running(self) -> int:
        with self._lock:
            return sum(not s.done.is_set() for s in self._sessions.values())

    def start(self) -> None:
        self._halt.clear()
        self._reaper = threading.Thread(target=self._reap_loop, name="command-reaper", daemon=True)
        self._reaper.start()

    def _reap_loop(self) -> None:
        while not self._halt.wait(1.0):
            try:
                self.reap()
            except Exception:  # the reaper must outlive any one bad session
                log.exception("command reaper failed")

    def stop(self, *, timeout: float = 5.0) -> None:
        """End every command and the reaper (node shutdown)."""
        self._halt.set()
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for s in sessions:
            s.end("node stopping")
        deadline = time.monotonic() + timeout
        for s in sessions:
            s.done.wait(max(0.0, deadline - time.monotonic()))
        if self._reaper is not None:
            self._reaper.join(timeout)


def _crlf(raw: bytes) -> bytes:
    """Line ends as a terminal shows them: commands run on a pty (commandRun takes cols and
    rows), whose ONLCR output flag turns every LF into CR LF (termios(3)); old clients split on it."""
    return raw.replace(b"\n", b"\r\n")


def _check_size(cols: int, rows: int) -> tuple[int, int]:
    if not (1 <= cols <= 10000 and 1 <= rows <= 10000):
        raise InvalidInput(f"terminal size {cols}x{rows} is out of range (1..10000)")
    return cols, rows


def _write_quietly(session: _Session, text: str) -> None:
    try:
        session.write(text)
    except CommandStopped:
        pass
