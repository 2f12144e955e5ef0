"""Named crash points for kill -9 tests: `reached(name)` kills the process when armed, else nothing."""

from __future__ import annotations

import os
import signal
import threading

# The one piece of module state besides loggers: armed points and how many more passes each
# gets before the kill. Empty unless `arm()` ran (only `appliance run` with APPLIANCE_CRASH_AT
# set does), so a point costs one truth test of an empty dict when off.
_armed: dict[str, int] = {}
_node: list[int] = []  # the supervisor's pid, when this is one of its children
_lock = threading.Lock()
ENV = "APPLIANCE_CRASH_AT"


def arm(spec: str) -> None:
    """Arm `name[:n]` (comma-separated): SIGKILL this process the n-th time `name` is reached."""
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = part.partition(":")
        _armed[name] = int(count or 1)


def arm_from_environment(*, supervisor: int | None = None) -> None:
    """In a child of the node, `supervisor` is the node's pid: a crash kills the whole node,
    as kill -9 of it would, not just the child the supervisor would restart."""
    spec = os.environ.get(ENV)
    if spec:
        arm(spec)
        if supervisor is not None:
            _node[:] = [supervisor]


def reached(name: str) -> None:
    if not _armed:
        return
    with _lock:
        left = _armed.get(name)
        if left is None:
            return
        _armed[name] = left - 1
        if left > 1:
            return
    # A real kill -9: no finally blocks, no atexit, no flush; exactly what a crash leaves.
    for pid in _node:  # the other children follow their supervisor (PR_SET_PDEATHSIG)
        os.kill(pid, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
