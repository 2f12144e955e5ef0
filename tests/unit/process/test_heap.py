"""Freed heap memory given back to the system (appliance.process.heap)."""

from __future__ import annotations

import threading

import pytest

from appliance.process import heap

needs_trim = pytest.mark.skipif(heap._TRIM is None, reason="the C library has no malloc_trim")


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@needs_trim
def test_trim_gives_back_memory_that_free_kept() -> None:
    # Blocks of 16 KiB (from the heap, below the mmap threshold), written, every other one
    # freed: free() keeps the 40 MB of holes inside the heap, resident.
    blocks = [bytearray(b"x" * 16384) for _ in range(5_000)]
    keep = blocks[1::2]
    del blocks
    before = _rss_kib()
    assert heap.trim()
    assert _rss_kib() < before - 20_000
    assert len(keep) == 2_500


@needs_trim
def test_idle_trim_trims_when_the_last_request_ends_only() -> None:
    idle = heap.IdleTrim()
    first_in, second_done = threading.Event(), threading.Event()

    def other() -> None:
        with idle.request():
            first_in.set()
            second_done.wait(30)

    thread = threading.Thread(target=other)
    thread.start()
    assert first_in.wait(30)
    with idle.request():
        pass
    assert idle.trims == 0  # another request was still in flight
    second_done.set()
    thread.join()
    assert idle.trims == 1
    with pytest.raises(RuntimeError):
        with idle.request():
            raise RuntimeError("the request failed")
    assert idle.trims == 2
