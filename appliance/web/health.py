"""/healthz and /readyz: is the node alive, and may a load balancer send it traffic."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from sqlalchemy import text

from appliance.db.engine import Store


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


class Health:
    """Each answer is computed at most every `cache_for` seconds, so a load balancer polling
    hard costs one store round trip per interval, and every check is bounded.

    The callables come from the process that serves the API: `processes` names each child of
    the node with whether it runs, `listeners` each SMTP listener with whether it is bound,
    `config_applied` whether the newest committed revision runs.
    """

    def __init__(self, *, store: Store, spool_dir: Path, min_free_bytes: int,
                 processes: Callable[[], Mapping[str, bool]] = lambda: {},
                 listeners: Callable[[], Mapping[str, bool]] = lambda: {},
                 config_applied: Callable[[], bool] = lambda: True,
                 disk_free: Callable[[Path], int] = lambda p: shutil.disk_usage(p).free,
                 cache_for: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.spool_dir = spool_dir
        self.min_free_bytes = min_free_bytes
        self.processes = processes
        self.listeners = listeners
        self.config_applied = config_applied
        self.disk_free = disk_free
        self.cache_for = cache_for
        self.clock = clock
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[float, list[Check]]] = {}

    def live(self) -> list[Check]:
        return self._cached_run("live", self._live)

    def ready(self) -> list[Check]:
        return self._cached_run("ready", self._ready)

    def _cached_run(self, key: str, run: Callable[[], list[Check]]) -> list[Check]:
        now = self.clock()
        with self._lock:
            hit = self._cached.get(key)
            if hit is not None and now - hit[0] < self.cache_for:
                return hit[1]
            checks = run()
            self._cached[key] = (now, checks)
            return checks

    def _live(self) -> list[Check]:
        checks = [Check("api", True, "answering")]
        for name, alive in sorted(self.processes().items()):
            checks.append(Check(f"process {name}", alive, "running" if alive else "not running"))
        return checks

    def _ready(self) -> list[Check]:
        checks = [*self._live(), self._store()]
        for name, bound in sorted(self.listeners().items()):
            checks.append(Check(f"listener {name}", bound, "bound" if bound else "not bound"))
        free = self.disk_free(self.spool_dir)
        checks.append(Check("spool disk", free >= self.min_free_bytes,
                            f"{free} bytes free (needs {self.min_free_bytes})"))
        applied = self.config_applied()
        checks.append(Check("config", applied, "newest revision applied" if applied
                            else "the newest revision is not applied"))
        return checks

    def _store(self) -> Check:
        try:
            with self.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure to reach it is the answer, not an error
            return Check("store", False, f"unreachable: {exc.__class__.__name__}")
        return Check("store", True, "reachable")


def report(checks: list[Check]) -> tuple[bool, bytes]:
    ok = all(c.ok for c in checks)
    lines = [f"{'ok' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in checks]
    return ok, ("\n".join(lines) + "\n").encode()
