"""The retry schedule and queue lifetime."""

from __future__ import annotations

import pytest

from appliance.delivery.retry import expired, next_retry, retry_at, retry_delay

SCHEDULE = [60, 300, 900]


@pytest.mark.parametrize(("retries", "delay"), [(0, 60), (1, 300), (2, 900), (3, 900), (50, 900)])
def test_schedule_steps_then_repeats_its_last_value(retries: int, delay: int) -> None:
    assert retry_delay(retries, SCHEDULE) == delay
    assert next_retry(retries, SCHEDULE, 1000.0) == 1000.0 + delay


def test_bad_schedule_or_count_is_refused() -> None:
    with pytest.raises(ValueError):
        retry_delay(0, [])
    with pytest.raises(ValueError):
        retry_delay(-1, SCHEDULE)


def test_lifetime_boundary() -> None:
    assert not expired(1000.0, 3600, 4599.9)
    assert expired(1000.0, 3600, 4600.0)


def test_last_retry_is_clamped_to_the_end_of_the_lifetime() -> None:
    assert retry_at(0, SCHEDULE, 1000.0, received=1000.0, lifetime=3600) == 1060.0
    assert retry_at(2, SCHEDULE, 4000.0, received=1000.0, lifetime=3600) == 4600.0
    assert retry_at(2, SCHEDULE, 4700.0, received=1000.0, lifetime=3600) == 4700.0
