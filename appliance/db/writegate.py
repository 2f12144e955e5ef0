"""SQLite's one writer at a time, queued without SQLite's busy handler.

A node is several processes (receivers, delivery, housekeeping, the API) writing one SQLite
file. Left to SQLite, a BEGIN IMMEDIATE that finds the write lock taken sleeps in its busy
handler (1, 2, 5, 10, 15, 20, 25 ... ms) and wakes late: under load the 250 of a receiver waits
for those sleeps rather than for the writer before it. The gate puts writers in line first:
threads of a process on a lock that wakes the next one the moment it is released, processes
on an flock(2) of a file beside the database, polled at most a millisecond apart. SQLite's own
lock is then free when a writer asks for it, and busy_timeout stays as the backstop for
writers outside the gate (sqlite3 at a shell).

flock belongs to an open file description, which fork shares: each process opens its own.
The kernel lets go of it when a process dies, so a writer killed in its transaction does not
block the others. Made by root (the CLI run by hand, say), the file is given to the owner of
the database, as SQLite does with its -wal and -shm files, so that the node's own user can
still open it.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from appliance.errors import StoreUnavailable

_FIRST_PAUSE = 0.00005  # seconds between tries of a taken file lock, doubling up to _MAX_PAUSE
_MAX_PAUSE = 0.001


class WriteGate:
    """`acquire(timeout)` / `release()` around each write transaction; re-entrant per thread
    (the file lock is taken by the outermost acquire only)."""

    def __init__(self, path: Path | None, *, owner_of: Path | None = None) -> None:
        self._path = path  # None: one process only (an in-memory database)
        self._owner_of = owner_of  # the database, whose owner the file gets when root makes it
        self._threads = threading.RLock()
        self._depth = 0
        self._fd = -1  # opened at the first write of this process
        self._pid = os.getpid()

    def acquire(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if self._pid != os.getpid():
            self._forked()
        if not self._threads.acquire(timeout=timeout):
            return False
        if self._depth == 0 and self._path is not None:
            try:
                locked = self._lock_file(deadline)
            except BaseException:
                self._threads.release()
                raise
            if not locked:
                self._threads.release()
                return False
        self._depth += 1
        return True

    def release(self) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._path is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _forked(self) -> None:
        """A copy made by fork: what the parent's threads held is not this process's, and the
        descriptor it inherited shares the parent's lock."""
        self._threads = threading.RLock()
        self._depth = 0
        if self._fd >= 0:
            os.close(self._fd)  # the parent's lock stays: the parent's own descriptor holds it
            self._fd = -1
        self._pid = os.getpid()

    def _lock_file(self, deadline: float) -> bool:
        assert self._path is not None
        if self._fd < 0:
            self._fd = self._open(self._path)
        pause = _FIRST_PAUSE
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
            now = time.monotonic()
            if now >= deadline:
                return False
            time.sleep(min(pause, deadline - now))
            pause = min(pause * 2, _MAX_PAUSE)

    def _open(self, path: Path) -> int:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreUnavailable(f"store unavailable: cannot open the write gate {path}: "
                                   f"{exc.strerror}") from exc
        if os.geteuid() == 0 and self._owner_of is not None:
            try:
                owner = os.stat(self._owner_of)
                os.fchown(fd, owner.st_uid, owner.st_gid)
            except OSError:
                pass  # no database file yet: SQLite creates it as this user too
        return fd
