"""rate() for the node as a whole: one process owns the windows and serves them on a UNIX socket.

The housekeeping process holds the node's one `Rates` (and flushes it); every other process
(receivers, delivery, API) asks it with `RemoteRates`, which has the same `rate`/`list`/`clear`
calls. One request is one JSON line, one answer is one JSON line, on a connection kept per
thread. Checking the arguments happens on the caller's side first, so a bad call costs no
round trip and gets the same InvalidInput as in one process.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from appliance.errors import InvalidInput, StoreUnavailable
from appliance.stats.patterns import check_page
from appliance.stats.rates import RateRow, Rates, clear_rates
from appliance.stats.window import validate

log = logging.getLogger(__name__)
Rows = list[RateRow]  # (a name: the method `list` below shadows the builtin in the class)


def rates_path(data_dir: Path) -> Path:
    return Path(data_dir) / "run" / "rates.sock"


class RemoteRates:
    """The rate() engine of another process of the node, reached over `path`."""

    def __init__(self, path: Path, *, connect_timeout: float = 5.0) -> None:
        self.path = str(path)
        self.connect_timeout = connect_timeout
        self._local = threading.local()
        self._all: list[tuple[socket.socket, Any]] = []  # every thread's, for close()
        self._all_lock = threading.Lock()

    def close(self) -> None:
        """Close the connections of every thread (at the end of the process's life)."""
        with self._all_lock:
            conns, self._all = self._all, []
        for sock, stream in conns:
            stream.close()
            sock.close()

    def rate(self, ns: str, entry: str, count: int, interval: int) -> bool:
        if type(count) is not int or type(interval) is not int:
            count, interval = _whole(count), _whole(interval)
        validate(ns, entry, count, interval)
        return bool(self._ask(["rate", ns, entry, count, interval]))

    def list(self, ns: str = "", entry: str = "", *, offset: int = 0,
             limit: int = 100) -> Rows:
        check_page(offset, limit)
        rows = self._ask(["list", ns, entry, offset, limit])
        return [RateRow(ns=r[0], entry=r[1], count=r[2], interval=r[3], expires=r[4]) for r in rows]

    def clear(self, session: Session, ns: str, entry: str = "") -> int:
        """Forget the windows in the owner (at once) and delete their stored hits in `session`
        (the owner never writes here: the caller may hold the store's write lock)."""
        cleared = int(self._ask(["clear", ns, entry]))
        clear_rates(session, ns, entry)
        return cleared

    def _ask(self, request: Sequence[Any]) -> Any:
        data = (json.dumps(request) + "\n").encode()
        for attempt in (1, 2):  # one retry: the owner may have restarted since the last call
            conn = self._connection()
            try:
                conn[0].sendall(data)
                line = conn[1].readline()
                if not line:
                    raise ConnectionError("rate owner closed the connection")
            except OSError:
                self._drop()
                if attempt == 2:
                    raise StoreUnavailable("the node's rate() owner is not reachable") from None
                continue
            answer = json.loads(line)
            if "error" in answer:
                raise InvalidInput(answer["error"])
            return answer["ok"]
        raise AssertionError("unreachable")

    def _connection(self) -> tuple[socket.socket, Any]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn  # type: ignore[no-any-return]
        deadline = time.monotonic() + self.connect_timeout
        while True:  # the owner may be starting (or restarting after a crash)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
                break
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise StoreUnavailable("the node's rate() owner is not reachable") from None
                time.sleep(0.05)
        conn = (sock, sock.makefile("rb"))
        self._local.conn = conn
        with self._all_lock:
            self._all.append(conn)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._all_lock:
                if conn in self._all:
                    self._all.remove(conn)
            conn[1].close()
            conn[0].close()


class RateServer:
    """Serves `rates` on a UNIX socket (one thread per connected process thread)."""

    def __init__(self, rates: Rates, path: Path) -> None:
        self.rates = rates
        self.path = Path(path)
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.unlink(self.path)  # left by an owner that was killed
        except FileNotFoundError:
            pass
        rates = self.rates

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    self.wfile.write((json.dumps(_answer(rates, json.loads(line))) + "\n").encode())

        server = socketserver.ThreadingUnixStreamServer(str(self.path), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="rate-server", daemon=True)
        self._thread.start()
        log.info("rate() windows served on %s", self.path)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _answer(rates: Rates, request: list[Any]) -> dict[str, Any]:
    try:
        op = request[0]
        if op == "rate":
            return {"ok": rates.rate(request[1], request[2], request[3], request[4])}
        if op == "list":
            rows = rates.list(request[1], request[2], offset=request[3], limit=request[4])
            return {"ok": [[r.ns, r.entry, r.count, r.interval, r.expires] for r in rows]}
        if op == "clear":
            return {"ok": rates.forget(request[1], request[2])}
        return {"error": f"unknown rate request {op!r}"}
    except InvalidInput as exc:
        return {"error": str(exc)}
    except Exception as exc:  # the caller gets an error, the server keeps serving
        log.exception("rate request failed")
        return {"error": f"rate request failed: {exc}"}


def _whole(value: int | float) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value  # type: ignore[return-value]
