"""Children forked from one pre-loaded process instead of each starting a fresh interpreter.

The supervisor imports every module its children use (Spyne, SQLAlchemy, aiosmtpd, lupa,
pydantic, prometheus_client, ...), moves what it holds out of the garbage collector's reach
(`gc.freeze()`: a collection writes to every object it visits and would unshare its page) and,
before it starts any thread, forks the fork server: a process that only forks. Each child is
forked twice (the middle process exits at once) so that it is re-parented to the supervisor,
which is a child subreaper (PR_SET_CHILD_SUBREAPER): the supervisor waits for it, sees how it
ended and restarts it as it would a child it started itself. The pages of those modules stay
shared by every process of the node (copy-on-write) instead of being loaded once per process.

The supervisor asks for a child with one datagram on a SOCK_SEQPACKET pair: a JSON request and
the descriptors the child gets (its log pipe, receivers' listening sockets); the answer is the
child's pid.
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_MAX_FDS = 64
_M_ARENA_MAX = -8  # mallopt(3)

# What a child runs in the forked process: (request, descriptors) -> exit code.
ChildMain = Callable[[dict[str, Any], list[int]], int]


def preload(database_url: str) -> None:
    """Import what the children import, so that forked children share it."""
    import appliance.compose  # noqa: F401  (every part of every role)
    import appliance.cli  # noqa: F401
    import appliance.process.child  # noqa: F401
    from appliance.soap.app import default_services

    default_services()  # the service modules (imported lazily by the application)
    import prometheus_client  # noqa: F401  (after the multiprocess folder is chosen)
    import prometheus_client.multiprocess  # noqa: F401
    import spyne.server.wsgi  # noqa: F401
    try:
        import setproctitle  # noqa: F401
    except ImportError:
        pass
    if database_url.startswith("postgresql"):
        import sqlalchemy.dialects.postgresql  # noqa: F401
        try:
            import psycopg  # noqa: F401
        except ImportError:
            pass
    gc.collect()
    gc.freeze()
    fewer_malloc_arenas()


def fewer_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives a thread that finds the arenas busy one of its own, up to 8 per core, and
    each keeps the memory freed in it for itself: the API's 32 request threads would hold
    their own peaks. A few arenas, shared, are reused instead. Inherited by forked children."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mallopt(_M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        pass


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (Linux 3.4+)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


class ForkServer:
    """The supervisor's end: `spawn(request, fds)` returns a `Forked` child of this process."""

    def __init__(self, main: ChildMain, *, after_fork: Callable[[], None] = lambda: None) -> None:
        """Forks the server now (call before any thread exists). `after_fork` runs once in the
        server (drop what it inherited and must not use, e.g. pooled store connections)."""
        if threading.active_count() != 1:
            raise RuntimeError("the fork server must be started before any thread")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the fork server
            code = 1
            try:
                ours.close()
                after_fork()
                code = _serve(theirs, main, parent)
            except BaseException:
                log.exception("fork server failed")
            finally:
                os._exit(code)
        theirs.close()
        self.pid = pid
        self._alive = True
        self._sock = ours
        self._lock = threading.Lock()

    def spawn(self, request: dict[str, Any], fds: list[int]) -> Forked:
        """Raises OSError when the server is gone (the caller then starts the child itself)."""
        with self._lock:
            socket.send_fds(self._sock, [json.dumps(request).encode()], fds)
            answer = self._sock.recv(4096)
        if not answer:
            raise ConnectionError("the fork server is gone")
        reply = json.loads(answer)
        if "pid" not in reply:
            raise OSError(str(reply.get("error") or "the fork server refused"))
        return Forked(int(reply["pid"]))

    def close(self) -> None:
        """The server exits when its socket closes; reap it."""
        self._sock.close()
        if self._alive:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self._alive = False

    def alive(self) -> bool:
        """False once the server has exited (and then it is reaped)."""
        if self._alive:
            try:
                pid, _status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid = self.pid
            self._alive = pid == 0
        return self._alive


class Forked:
    """A forked child as the supervisor handles it: the part of subprocess.Popen it uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: its status is lost
                self.returncode = 255
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.02)
        return code

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def _serve(sock: socket.socket, main: ChildMain, supervisor: int) -> int:
    _die_with(supervisor)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        import setproctitle

        setproctitle.setproctitle("appliance forkserver")
    except ImportError:
        pass
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, _MAX_FDS)
        except OSError:
            return 0
        if not data:
            return 0  # the supervisor closed its end
        try:
            pid = _fork_child(json.loads(data), fds, main, sock, supervisor)
            reply: dict[str, Any] = {"pid": pid}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        sock.send(json.dumps(reply).encode())


def _fork_child(request: dict[str, Any], fds: list[int], main: ChildMain,
                sock: socket.socket, supervisor: int) -> int:
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(read_end)
            pid = os.fork()
            if pid == 0:
                os.close(write_end)
                _run_child(request, fds, main, sock, supervisor)  # never returns
            os.write(write_end, str(pid).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 64):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(middle, 0)  # once it is gone, the child's parent is the supervisor
    if not chunks:
        raise OSError("the child could not be forked")
    return int(b"".join(chunks))


def _run_child(request: dict[str, Any], fds: list[int], main: ChildMain,
               sock: socket.socket, supervisor: int) -> None:
    code = 1
    try:
        sock.close()
        devnull = os.open(os.devnull, os.O_RDONLY)  # as a child started with stdin=DEVNULL
        os.dup2(devnull, 0)
        os.close(devnull)
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        deadline = time.monotonic() + 5.0
        while os.getppid() != supervisor and time.monotonic() < deadline:
            time.sleep(0.001)  # the middle process is exiting: wait to be re-parented
        code = main(request, fds)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        log.exception("child failed")
    finally:
        logging.shutdown()
        os._exit(code)


def _die_with(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)
