"""The retry back-off schedule and the queue lifetime, as pure functions."""

from __future__ import annotations

from collections.abc import Sequence


def retry_delay(retries: int, schedule: Sequence[int]) -> int:
    """Seconds to wait after a failed attempt, given how many attempts had failed before it.

    The schedule lists the delays after the 1st, 2nd, ... failure; its last value repeats.
    """
    if not schedule:
        raise ValueError("the retry schedule is empty")
    if retries < 0:
        raise ValueError("retries cannot be negative")
    return schedule[min(retries, len(schedule) - 1)]


def next_retry(retries: int, schedule: Sequence[int], now: float) -> float:
    """When an entry that has just failed (after `retries` earlier failures) is due again."""
    return now + retry_delay(retries, schedule)


def expired(received: float, lifetime: float, now: float) -> bool:
    """True once an entry has been queued for `lifetime` seconds (it then bounces)."""
    return now - received >= lifetime


def expires_before_retry(received: float, lifetime: float, retry_at: float) -> bool:
    """True when the next retry would fall after the lifetime: bounce now rather than wait.

    Postfix gives up at the attempt after maximal_queue_lifetime; bouncing when the next
    attempt could not happen in time tells the sender sooner and keeps the same bound.
    """
    return retry_at - received > lifetime
