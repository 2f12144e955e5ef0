"""A delaying TCP proxy on loopback: a slow node, or network latency, for client tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable


class DelayProxy:
    """A TCP proxy on loopback that holds each new connection for `delay` seconds before it is
    passed on, or, with `every_request`, every chunk the client sends (a stand-in for latency).
    With `hold`, a new connection is passed on when `hold()` returns instead (a barrier that
    opens once several clients wait at once, an event the test sets)."""

    def __init__(self, target_port: int, delay: float = 0.0, *, every_request: bool = False,
                 hold: Callable[[], object] | None = None) -> None:
        self.delay = delay
        self.hold = hold
        self.held = 0  # connections that waited in hold()
        self.every_request = every_request
        self.target_port = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.hold is not None:
            try:
                self.hold()
            except threading.BrokenBarrierError:
                client.close()  # the others never came: this connection fails
                return
            self.held += 1
        else:
            time.sleep(self.delay)
        with client, socket.create_connection(("127.0.0.1", self.target_port)) as upstream:
            def pump(src: socket.socket, dst: socket.socket, delay: float = 0.0) -> None:
                try:
                    while data := src.recv(65536):
                        if delay:
                            time.sleep(delay)
                        dst.sendall(data)
                except OSError:
                    pass
                finally:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
            back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
            back.start()
            pump(client, upstream, self.delay if self.every_request else 0.0)
            back.join(timeout=30)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
