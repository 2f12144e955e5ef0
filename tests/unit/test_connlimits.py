"""Connection counting and one log line per condition."""

from __future__ import annotations

import logging

import pytest

from appliance.connlimits import ConditionLog, ConnectionCounter, share


def test_counter_per_address_and_total(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    counter = ConnectionCounter(total=3, per_address=2, name="T",
                                log=ConditionLog(logging.getLogger("t"), clock=lambda: now[0]))
    assert counter.admit("a") == "" and counter.admit("a") == ""
    assert "one address" in counter.admit("a")
    assert counter.admit("b") == ""
    assert "3 connections open" in counter.admit("c")
    counter.release("a")
    assert counter.admit("c") == "" and counter.count == 3
    for _ in range(50):
        counter.admit("a")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2  # the two conditions, once each
    now[0] = 61.0
    counter.admit("a")
    assert "more in the last 60 s" in caplog.records[-1].getMessage()


def test_share_splits_a_limit_between_processes() -> None:
    assert share(50, 1) == 50 and share(50, 4) == 13 and share(1, 8) == 1
