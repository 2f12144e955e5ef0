"""The rate() window with an injected clock: limits, sliding, refused calls not counted."""

from __future__ import annotations

import pytest

from appliance.errors import InvalidInput
from appliance.stats.window import SlidingWindow, validate


def test_allows_count_calls_then_refuses() -> None:
    w = SlidingWindow()
    assert [w.hit(100.0 + i, 3, 60) for i in range(5)] == [True, True, True, False, False]
    assert w.seen(104.0, 60) == 3


def test_window_slides_as_old_hits_expire() -> None:
    w = SlidingWindow()
    for t in (0.0, 10.0, 20.0):
        assert w.hit(t, 3, 60)
    assert not w.hit(59.9, 3, 60)
    # At exactly 60 the hit at 0 is no longer "in the last 60 seconds".
    assert w.hit(60.0, 3, 60)
    assert not w.hit(69.0, 3, 60)
    assert w.hit(70.0, 3, 60)
    assert w.hits == [20.0, 60.0, 70.0]


def test_refused_calls_do_not_extend_the_block() -> None:
    w = SlidingWindow()
    assert w.hit(0.0, 1, 10)
    for t in range(1, 10):
        assert not w.hit(float(t), 1, 10)
    assert w.hit(10.0, 1, 10)


def test_deny_until_is_when_the_count_th_newest_hit_expires() -> None:
    w = SlidingWindow([1.0, 5.0, 7.0])
    assert w.deny_until(2, 60) == 65.0
    assert w.deny_until(3, 60) == 61.0
    assert w.deny_until(4, 60) == 0.0


@pytest.mark.parametrize(
    "args",
    [("", "e", 1, 1), ("n" * 129, "e", 1, 1), ("n", "e" * 256, 1, 1), ("n", "e", 0, 1),
     ("n", "e", 1, 0), ("n", "e", 1, 400 * 86400), ("n", "e", 1.5, 1)],
)
def test_bad_arguments_are_refused(args: tuple) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidInput):
        validate(*args)


def test_holds_finds_a_counted_hit() -> None:
    w = SlidingWindow([1.0, 5.0, 5.0, 7.0])
    assert w.holds(5.0) and w.holds(7.0) and not w.holds(6.0) and not w.holds(8.0)
    w.prune(7.0, 3)
    assert not w.holds(1.0) and w.holds(5.0)


@pytest.mark.parametrize("args", [(5, "e", 1, 1), ("n", None, 1, 1), ("n", "e", True, 1), ("n", "e", 1, 60.0)])
def test_wrong_types_are_refused(args: tuple) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidInput):
        validate(*args)
