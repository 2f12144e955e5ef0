"""The delivery wake-up: a UNIX datagram socket in the data dir that receivers poke after commits.

Datagrams are fire-and-forget: a sender never blocks (a full socket buffer means delivery has
wake-ups pending anyway) and a missing listener (delivery restarting) is no error; delivery's
slow poll (`queue.poll_interval`) is the fallback that finds whatever a lost wake-up announced.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

WAKE = b"w"


def wake_path(data_dir: Path) -> Path:
    return Path(data_dir) / "run" / "wake.sock"


class WakeSender:
    """`wake()` sends one datagram to delivery; safe from any thread, never blocks or raises."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def wake(self) -> None:
        try:
            self._sock.sendto(WAKE, self.path)
        except OSError as exc:
            # ENOENT/ECONNREFUSED: delivery is (re)starting and polls at start anyway;
            # EAGAIN: its buffer holds wake-ups it has not read yet.
            if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN):
                log.debug("wake-up not sent: %s", exc)

    def start(self) -> None:
        return None

    def stop(self) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()


class WakeListener:
    """Binds the wake socket and calls `on_wake` (from its thread) for each burst of datagrams."""

    def __init__(self, path: Path, on_wake: Callable[[], None]) -> None:
        self.path = Path(path)
        self.on_wake = on_wake
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.path.unlink()  # left by a delivery process that was killed
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="wake", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        sock.settimeout(0.5)  # looks up that often to notice stop()
        while not self._closing:
            try:
                sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return
            try:  # drain the burst: one kick for many commits
                while sock.recv(64, socket.MSG_DONTWAIT):
                    pass
            except OSError:
                pass
            if not self._closing:
                self.on_wake()

    def stop(self) -> None:
        self._closing = True
        if self._sock is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
