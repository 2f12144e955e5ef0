"""Thread-backed components that do one piece of work every `interval` seconds until stopped."""

from __future__ import annotations

import abc
import threading


class Periodic(abc.ABC):
    """start() runs `tick()` every `self.interval` seconds on a daemon thread; stop() joins it.

    `tick_at_start` ticks once as soon as the thread starts. `interval` may be changed while
    running (the next wait uses the new value).
    """

    thread_name = "periodic"
    tick_at_start = False
    interval: float

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @abc.abstractmethod
    def tick(self) -> object:
        """One round of work; exceptions are the subclass's to handle."""

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> bool:
        """Stop and join the thread; False if it was not running."""
        if self._thread is None:
            return False
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self._thread = None
        return True

    def wake(self) -> None:
        """Tick now instead of at the end of the current wait (e.g. the interval changed)."""
        self._wake.set()

    def _run(self) -> None:
        if self.tick_at_start:
            self.tick()
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.tick()
