"""The API listener's guards on cheroot: TLS handshakes off the accept path, connection caps
per address and in total (503 at once), and a deadline on the TLS handshake plus request head.

cheroot accepts on one thread and, with its built-in adapter, performs the TLS handshake right
there: one silent client stalls every accept for the socket timeout. Here the accept thread
only wraps the socket (no I/O) and parks the connection in cheroot's selector; a worker takes
it once bytes arrive and handshakes under the header deadline. A client that trickles its
request head (slowloris) loses its connection at the deadline, and the per-address cap, lower
than the worker count, keeps one address from holding every worker meanwhile.

The API runs in one process, so these per-process counts are the node's.
"""

from __future__ import annotations

import logging
import selectors
import socket
import ssl
import threading
import time
from typing import Any

from cheroot import wsgi
from cheroot.connections import ConnectionManager, _ThreadsafeSelector
from cheroot.server import HTTPConnection, HTTPRequest
from cheroot.ssl.builtin import BuiltinSSLAdapter

from appliance.connlimits import ConditionLog, ConnectionCounter

log = logging.getLogger(__name__)

_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
         b"Content-Length: 21\r\nRetry-After: 5\r\nConnection: close\r\n\r\n"
         b"too many connections\n")


class DeferredHandshakeAdapter(BuiltinSSLAdapter):  # type: ignore[misc]
    """Wraps without handshaking: the handshake happens in a worker (GuardedConnection)."""

    def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, str]]:
        wrapped = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
        return wrapped, {"HTTPS": "on"}


class Deadlines:
    """Shuts down sockets whose request head is not in by their deadline (one thread)."""

    def __init__(self, *, tick: float = 0.1, log_every: float = 60.0) -> None:
        self._tick = tick
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, socket.socket, str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = ConditionLog(log, interval=log_every)

    @property
    def armed(self) -> int:
        """Connections whose request head is being read now (in a worker)."""
        return len(self._armed)

    def arm(self, sock: socket.socket, seconds: float, address: str) -> None:
        with self._lock:
            self._armed[id(sock)] = (time.monotonic() + seconds, sock, address)

    def disarm(self, sock: socket.socket) -> None:
        with self._lock:
            self._armed.pop(id(sock), None)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="soap-deadlines", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            now = time.monotonic()
            with self._lock:
                due = [(k, v) for k, v in self._armed.items() if v[0] <= now]
                for key, _ in due:
                    del self._armed[key]
            for _, (_, sock, address) in due:
                self._log.note("API: request head not complete by the deadline, closing "
                               "such connections", address)
                try:  # the plain socket's shutdown: a blocked read in the worker returns
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass


class GuardedRequest(HTTPRequest):  # type: ignore[misc]
    def parse_request(self) -> None:
        try:
            super().parse_request()
        finally:  # the head is in (or failed): the body and the answer have their own limits
            self.server.deadlines.disarm(self.conn.socket)


class GuardedConnection(HTTPConnection):  # type: ignore[misc]
    RequestHandlerClass = GuardedRequest
    counted_address: str | None = None
    _handshaken = False

    def communicate(self) -> bool:
        sock = self.socket
        server: GuardedServer = self.server
        server.deadlines.arm(sock, server.header_timeout, str(self.remote_addr))
        if isinstance(sock, ssl.SSLSocket) and not self._handshaken:
            try:
                sock.do_handshake()
            except (OSError, ValueError):  # ssl.SSLError is an OSError; timeouts too
                server.deadlines.disarm(sock)
                return False
            self._handshaken = True
        return bool(super().communicate())

    def close(self) -> None:
        address, self.counted_address = self.counted_address, None
        if address is not None:
            self.server.gate.release(address)
        self.server.deadlines.disarm(self.socket)
        super().close()


class _TolerantSelector(_ThreadsafeSelector):  # type: ignore[misc]
    def unregister(self, fileobj: Any) -> Any:
        try:
            return super().unregister(fileobj)
        except KeyError:  # evicted (GuardedManager) earlier in the same select() round
            return None


class GuardedManager(ConnectionManager):  # type: ignore[misc]
    """Admits each accepted connection against the caps and parks it until it is readable."""

    def __init__(self, server: Any) -> None:
        super().__init__(server)
        getattr(self, "_selector").close()
        self._selector = _TolerantSelector()
        self._selector.register(server.socket.fileno(), selectors.EVENT_READ, data=server)

    def _from_server_socket(self, server_socket: socket.socket) -> Any:
        conn = super()._from_server_socket(server_socket)  # type: ignore[misc]
        if conn is None:
            return None
        address = str(getattr(conn, "remote_addr", "") or "")
        gate: ConnectionCounter = self.server.gate
        if gate.full(address):
            self._evict_idle(address if gate.count < gate.total else None)
        if gate.admit(address):
            _refuse(conn)
            return None
        conn.counted_address = address
        self.put(conn)  # to a worker once it sends something, not before
        return None

    def _evict_idle(self, address: str | None) -> None:
        """Close the longest-idle parked connection (of `address`, or any): a kept-alive
        connection nobody uses must not keep a new client out."""
        selector: Any = getattr(self, "_selector")
        idle = [(fd, c) for fd, c in selector.connections if c is not self.server
                and (address is None or getattr(c, "counted_address", None) == address)]
        if idle:
            fd, victim = min(idle, key=lambda pair: pair[1].last_used or 0.0)
            selector.unregister(fd)
            victim.evicted = True  # it may still be in this round's ready list: skipped there
            victim.close()


class GuardedServer(wsgi.Server):  # type: ignore[misc]
    ConnectionClass = GuardedConnection

    def __init__(self, *args: Any, gate: ConnectionCounter, header_timeout: float,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate
        self.header_timeout = header_timeout
        self.deadlines = Deadlines()

    def process_conn(self, conn: Any) -> None:
        if not getattr(conn, "evicted", False):
            super().process_conn(conn)

    def prepare(self) -> None:
        super().prepare()
        plain: Any = self._connections  # type: ignore[has-type]
        self._connections = GuardedManager(self)
        plain._selector.close()

    def serve(self) -> None:
        self.deadlines.start()
        try:
            super().serve()
        finally:
            self.deadlines.stop()


def _refuse(conn: Any) -> None:
    """503 at once on plain HTTP; over TLS (no handshake done, none spent) just the close."""
    sock = conn.socket
    if not isinstance(sock, ssl.SSLSocket):
        try:
            sock.setblocking(False)
            sock.send(_BUSY)
        except OSError:
            pass
    conn.close()
