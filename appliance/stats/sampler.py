"""Live graphs: 1-second measurements of a graph's sources, as text lines (`statd -g GRAPH`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from pathlib import Path

from appliance.errors import NotFound
from appliance.stats import legacy
from appliance.stats.sources import Measurement, Probe, measure


def format_line(ts: float, before: Measurement, after: Measurement, elapsed: float) -> str:
    """`TS name=value ...`: levels as they are, cumulative counts as a per-second rate."""
    parts = [str(int(ts))]
    for s in after.sources:
        now = after.values.get(s.name)
        if now is None:
            parts.append(f"{s.name}=U")
        elif s.kind == "DERIVE":
            prev = before.values.get(s.name, now)
            rate = max(0.0, (now - prev) / elapsed) if elapsed > 0 else 0.0
            parts.append(f"{s.name}={rate:.2f}")
        else:
            parts.append(f"{s.name}={now:g}")
    return " ".join(parts)


def _one(probe: Probe, graph: str, now: float) -> Measurement:
    found = measure(probe, now=now, only=graph)
    if not found:
        raise NotFound(f"no graph {graph!r}")
    return found[0]


def sample_lines(
    graph: str, *, probe: Probe, clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep, count: int | None = None, period: float = 1.0,
) -> Iterator[str]:
    """One line per `period` (default 1 s) for `graph`, forever or `count` times; NotFound first if unknown."""
    t0 = clock()
    before = _one(probe, graph, t0)
    emitted = 0
    while count is None or emitted < count:
        sleep(max(0.0, t0 + period - clock()))
        t1 = clock()
        after = _one(probe, graph, t1)
        yield format_line(t1, before, after, t1 - t0)
        before, t0 = after, t1
        emitted += 1


async def asample_lines(
    graph: str, *, probe: Probe, clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, count: int | None = None, period: float = 1.0,
) -> AsyncIterator[str]:
    """The same as an async generator; measurements run in a thread (they read the store)."""
    t0 = clock()
    before = await asyncio.to_thread(_one, probe, graph, t0)
    emitted = 0
    while count is None or emitted < count:
        await sleep(max(0.0, t0 + period - clock()))
        t1 = clock()
        after = await asyncio.to_thread(_one, probe, graph, t1)
        yield format_line(t1, before, after, t1 - t0)
        before, t0 = after, t1
        emitted += 1


class Sampler:
    """The node's sampler, bound to its probe; matches commands' GraphSampler protocol."""

    def __init__(self, probe: Probe, *, storage: Path | None = None) -> None:
        self.probe = probe
        self.storage = storage  # a path in the node's data directory (system-storage-usage)

    def counter_samples(self, *, clock: Callable[[], float],
                        sleep: Callable[[float], None]) -> Iterator[dict[str, float]]:
        """Every counter (appliance.stats.legacy) once per second, forever: rates need two
        snapshots, so the first comes after one second."""
        before = legacy.take(self.probe, now=clock(), storage=self.storage)
        while True:
            sleep(max(0.0, before.ts + 1.0 - clock()))
            after = legacy.take(self.probe, now=clock(), storage=self.storage)
            yield legacy.counters(before, after)
            before = after

    def __call__(self, graph: str, *, clock: Callable[[], float], sleep: Callable[[float], None]) -> Iterator[str]:
        return sample_lines(graph, probe=self.probe, clock=clock, sleep=sleep)
