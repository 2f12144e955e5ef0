"""CoalescedKick: many enqueues in a short time make one delivery kick."""

from __future__ import annotations

import asyncio

from appliance.smtp.server import CoalescedKick
from tests.support.wait import wait_until_async


def test_many_calls_within_the_delay_kick_once_and_later_calls_kick_again() -> None:
    kicks: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        kick = CoalescedKick(lambda: kicks.append(loop.time()), delay=0.01)
        for _ in range(50):
            kick()
        assert kicks == []  # not yet: the first call only scheduled it
        await wait_until_async(lambda: kicks, timeout=10, interval=0.005, what="the first kick")
        kick()
        await wait_until_async(lambda: len(kicks) >= 2, timeout=10, interval=0.005, what="a second kick")

    asyncio.run(asyncio.wait_for(scenario(), timeout=10))
    assert len(kicks) == 2
