"""When to restart a child that died: a pure back-off schedule (no clock, no processes)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, kw_only=True)
class Backoff:
    """Restart delays that double with each quick death and reset after a stable run.

    A child that ran at least `stable_after` seconds before dying is restarted after `first`
    seconds; each further death within `stable_after` of its start doubles the delay, up to
    `ceiling`. So a child that crashes at once on every start (a bad config, a broken store)
    does not spin the machine, and one that crashed after hours comes back at once.
    """

    first: float = 0.2
    ceiling: float = 30.0
    stable_after: float = 10.0


@dataclasses.dataclass(frozen=True)
class RestartState:
    """What the supervisor remembers of one child slot between its deaths."""

    failures: int = 0  # consecutive quick deaths


def next_restart(policy: Backoff, state: RestartState, *, started: float,
                 died: float) -> tuple[float, RestartState]:
    """The delay before restarting a child that started at `started` and died at `died`,
    and the state to keep for its next death."""
    if died - started >= policy.stable_after:
        return policy.first, RestartState(failures=1)
    failures = state.failures + 1
    delay = min(policy.ceiling, policy.first * (2 ** (failures - 1)))
    return delay, RestartState(failures=failures)
