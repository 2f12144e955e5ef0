"""The rate() sliding window as pure logic over hit timestamps (the model the store follows)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from appliance.errors import InvalidInput


class SlidingWindow:
    """Counted hits of one key; a hit at `ts` is inside the window while `now - interval < ts`."""

    def __init__(self, hits: Iterable[float] = ()) -> None:
        self.hits = sorted(hits)

    def prune(self, now: float, interval: float) -> None:
        cut = bisect.bisect_right(self.hits, now - interval)
        del self.hits[:cut]

    def seen(self, now: float, interval: float) -> int:
        self.prune(now, interval)
        return len(self.hits)

    def hit(self, now: float, count: int, interval: float) -> bool:
        """True, and the call counted, while fewer than `count` hits are in the window."""
        hits = self.hits
        if hits and hits[0] <= now - interval:  # prune(), inlined: this is rate()'s hot path
            del hits[:bisect.bisect_right(hits, now - interval)]
        if len(hits) >= count:
            return False
        if not hits or hits[-1] <= now:
            hits.append(now)  # the clock moved forward: the usual case
        else:
            bisect.insort(hits, now)
        return True

    def holds(self, ts: float) -> bool:
        i = bisect.bisect_left(self.hits, ts)
        return i < len(self.hits) and self.hits[i] == ts

    def deny_until(self, count: int, interval: float) -> float:
        """Until when every call is refused (0.0 when the window is not full)."""
        if len(self.hits) < count:
            return 0.0
        return self.hits[-count] + interval


def validate(ns: str, entry: str, count: int, interval: int) -> None:
    """Raise InvalidInput for arguments rate() cannot use."""
    if not isinstance(ns, str) or not isinstance(entry, str):
        raise InvalidInput("rate namespace and entry must be strings")
    if not ns or len(ns) > 128:
        raise InvalidInput("rate namespace must be 1 to 128 characters")
    if len(entry) > 255:
        raise InvalidInput("rate entry must be at most 255 characters")
    if type(count) is not int or count < 1:
        raise InvalidInput("rate count must be an integer of 1 or more")
    if type(interval) is not int or not 1 <= interval <= 366 * 86400:
        raise InvalidInput("rate interval must be whole seconds, 1 to a year")
