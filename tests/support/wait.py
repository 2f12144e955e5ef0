"""Waiting in tests: poll a condition until it holds, bounded, with a message that says what."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

INTERVAL = 0.05


def wait_until(predicate: Callable[[], T | None], *, timeout: float = 30.0, what: str = "condition",
               interval: float = INTERVAL, retry: tuple[type[BaseException], ...] = ()) -> T:
    """Call `predicate` until it returns something truthy and return that. Exceptions of the
    types in `retry` count as "not yet" (something polled that is not reachable yet). Raises
    AssertionError naming `what` (and the last value or error) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value: object = predicate()
        except retry as exc:
            value = exc
        else:
            if value:
                return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {value!r}")
        time.sleep(interval)


async def wait_until_async(predicate: Callable[[], T | None | Awaitable[T | None]], *, timeout: float = 30.0,
                           what: str = "condition", interval: float = INTERVAL) -> T:
    """wait_until for code on an event loop: `predicate` may be a coroutine function, and the
    pauses let the loop run what is being waited for."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {value!r}")
        await asyncio.sleep(interval)
