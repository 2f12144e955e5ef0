"""Counter batching in memory: adds up, hands over once, survives a failed flush, thread-safe."""

from __future__ import annotations

import threading

import pytest

from appliance.errors import InvalidInput
from appliance.stats.counters import Counters


def test_calls_add_up_into_one_entry_per_key() -> None:
    c = Counters()
    c.stat("a")
    c.stat("a")
    c.stat("a")
    c.stat("a", "x", "y", n=5)
    assert c.take() == {("a", "", ""): 3, ("a", "x", "y"): 5}
    assert c.take() == {}


def test_restore_merges_a_failed_batch_with_new_counts() -> None:
    c = Counters()
    c.stat("a", n=2)
    batch = c.take()
    c.stat("a")
    c.stat("b")
    c.restore(batch)
    assert c.pending() == {("a", "", ""): 3, ("b", "", ""): 1}


@pytest.mark.parametrize(
    "args", [("",), ("x" * 256,), ("a", "x" * 256), ("a", "", "x" * 256), (5,), ("a", None), ("a", "b", ["c"])]
)
def test_bad_keys_are_refused(args: tuple[str, ...]) -> None:
    c = Counters()
    with pytest.raises(InvalidInput):
        c.stat(*args)
    assert c.pending() == {}


def test_increment_must_be_positive() -> None:
    with pytest.raises(InvalidInput):
        Counters().stat("a", n=0)


def test_no_count_is_lost_between_threads_and_takes() -> None:
    c = Counters()
    taken: list[dict[tuple[str, str, str], int]] = []
    stop = threading.Event()

    def taker() -> None:
        while not stop.is_set():
            taken.append(c.take())

    def worker() -> None:
        for _ in range(20_000):
            c.stat("k", "l")

    t = threading.Thread(target=taker)
    t.start()
    workers = [threading.Thread(target=worker) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    t.join()
    taken.append(c.take())
    assert sum(b.get(("k", "l", ""), 0) for b in taken) == 80_000
