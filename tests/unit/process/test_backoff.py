"""The supervisor's restart schedule: doubling on quick deaths, capped, reset after a stable run."""

from __future__ import annotations

from appliance.process.backoff import Backoff, RestartState, next_restart
from appliance.process.supervisor import listening_changed, receiver_count
from appliance.config.document import parse

POLICY = Backoff(first=0.5, ceiling=4.0, stable_after=10.0)


def test_quick_deaths_double_the_delay_up_to_the_ceiling() -> None:
    state = RestartState()
    delays = []
    for n in range(6):
        delay, state = next_restart(POLICY, state, started=100.0 + n, died=100.5 + n)
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert state.failures == 6


def test_a_stable_run_resets_the_count() -> None:
    state = RestartState(failures=5)
    delay, state = next_restart(POLICY, state, started=0.0, died=10.0)
    assert (delay, state.failures) == (0.5, 1)
    delay, state = next_restart(POLICY, state, started=11.0, died=12.0)
    assert (delay, state.failures) == (1.0, 2)


def test_receivers_follow_the_config_and_changes_roll_them() -> None:
    one = parse('[smtp]\nprocesses = 3\n')
    assert receiver_count(one) == 3
    assert receiver_count(parse("")) >= 1
    moved = parse('[smtp]\nprocesses = 3\n[[listeners]]\nid = "inbound"\nport = 2600\n')
    assert listening_changed(one, moved)
    assert not listening_changed(one, parse('[smtp]\nprocesses = 3\n[queue]\nworkers = 3\n'))
    assert listening_changed(one, parse('[smtp]\nprocesses = 2\n'))
