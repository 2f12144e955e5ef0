"""qshape age buckets (pure): <5m, <10m, <20m, ... <1280m, older."""

from __future__ import annotations

import pytest

from appliance.queue.query import BUCKETS, age_bucket

M = 60


@pytest.mark.parametrize(
    ("age", "bucket"),
    [
        (-30, 0), (0, 0), (5 * M - 1, 0), (5 * M, 1), (10 * M - 0.5, 1), (10 * M, 2), (19 * M, 2),
        (20 * M, 3), (40 * M, 4), (80 * M, 5), (160 * M, 6), (320 * M, 7), (640 * M, 8),
        (1280 * M - 1, 8), (1280 * M, 9), (10**9, 9),
    ],
)
def test_age_bucket(age: float, bucket: int) -> None:
    assert age_bucket(age) == bucket


def test_ten_buckets() -> None:
    assert BUCKETS == 10
