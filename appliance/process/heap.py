"""Freed heap memory given back to the system.

glibc's free() keeps what it frees inside the heap for later allocations and returns only the
top of each arena: the API process, having built a page of queue entries for a SOAP client or
the console, keeps those pages resident long after the objects are gone. malloc_trim(0) also
releases the free pages inside the heap (madvise), in about 0.1 ms here.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable, Iterator

_TRIM: Callable[[int], int] | None
try:
    _TRIM = ctypes.CDLL(None).malloc_trim  # glibc only
except (OSError, AttributeError):
    _TRIM = None


def trim() -> bool:
    """Give the heap's free pages back; False where the C library has no malloc_trim."""
    if _TRIM is None:
        return False
    _TRIM(0)  # ctypes lets go of the interpreter lock meanwhile
    return True


class IdleTrim:
    """Trims whenever the last request in flight ends: an idle server holds only what it uses,
    and a busy one (another request always in flight) pays nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = 0
        self.trims = 0

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                idle = self._busy == 0
            if idle and trim():
                self.trims += 1
