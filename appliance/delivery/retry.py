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


def retry_at(retries: int, schedule: Sequence[int], now: float, *, received: float, lifetime: float) -> float:
    """The next attempt, but never later than the end of the lifetime, so that the last attempt
    happens when the lifetime ends (as Postfix's maximal_queue_lifetime) and not a step after."""
    return max(now, min(next_retry(retries, schedule, now), received + lifetime))


def attempts_left(retries: int, schedule: Sequence[int], next_attempt: float, *, received: float,
                  lifetime: float, cap: int = 10_000) -> int:
    """How many attempts an entry still gets if each one fails temporarily: the next one (at
    `next_attempt`) and every retry the schedule fits before the lifetime ends; a failure at
    or after the end bounces."""
    left, at, failed = 0, next_attempt, retries
    while left < cap:
        left += 1
        if expired(received, lifetime, at):
            break
        at = retry_at(failed, schedule, at, received=received, lifetime=lifetime)
        failed += 1
    return left
