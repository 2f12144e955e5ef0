"""The running configuration and the subscribers that apply a new one without a restart."""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Protocol

from appliance.config.document import ConfigError, parse
from appliance.config.schema import Config

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    """A part that follows the configuration (listeners, delivery, scripts, ...).

    `apply(old, new)` switches the part from `old` to `new`; it raises to refuse `new`
    (the holder then calls `apply(new, old)` on the parts already switched, in reverse order,
    and keeps `old` running). Sessions already in progress may finish on `old`'s settings.
    """

    def apply(self, old: Config, new: Config) -> None: ...


@dataclasses.dataclass(frozen=True)
class Running:
    revision: int  # the revision of the (shared) text; 0 = not from a store
    text: str  # the effective text (node overrides written in)
    config: Config


class ConfigHolder:
    """Holds the running Config; `offer` validates a revision and applies it to subscribers."""

    def __init__(self, running: Running) -> None:
        self._running = running
        self._subscribers: list[Subscriber] = []
        self._lock = threading.RLock()
        self.problem = ""  # why the newest offered revision is not running ("" = it is)
        self._refused: tuple[int, str] | None = None

    @property
    def running(self) -> Running:
        return self._running

    @property
    def config(self) -> Config:
        return self._running.config

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(subscriber)

    def offer(self, revision: int, text: str) -> bool:
        """Apply `text` if it differs from what runs; False (and `problem` set) if refused."""
        with self._lock:
            old = self._running
            if revision == old.revision and text == old.text:
                return True
            if self._refused == (revision, text):
                return False  # tried already; a new revision or override brings a new attempt
            try:
                new = parse(text)
            except ConfigError as exc:
                self._refused = (revision, text)
                return self._refuse(revision, str(exc))
            applied: list[Subscriber] = []
            for subscriber in self._subscribers:
                try:
                    subscriber.apply(old.config, new)
                except Exception as exc:  # a part refused: undo the ones that switched
                    log.exception("applying config revision %d failed in %s", revision,
                                  type(subscriber).__name__)
                    self._undo(applied, new, old.config)
                    self._refused = (revision, text)
                    return self._refuse(revision, f"{type(subscriber).__name__}: {exc}")
                applied.append(subscriber)
            self._running = Running(revision=revision, text=text, config=new)
            self.problem = ""
            self._refused = None
            log.info("config revision %d applied (was %d)", revision, old.revision)
            return True

    def _undo(self, applied: list[Subscriber], new: Config, old: Config) -> None:
        for subscriber in reversed(applied):
            try:
                subscriber.apply(new, old)
            except Exception:
                log.exception("restoring the previous config in %s failed",
                              type(subscriber).__name__)

    def refuse(self, revision: int, why: str) -> bool:
        """Record that `revision` cannot run (e.g. the node's overrides do not fit it)."""
        with self._lock:
            return self._refuse(revision, why)

    def _refuse(self, revision: int, why: str) -> bool:
        if why != self.problem:
            log.error("config revision %d not applied, keeping revision %d: %s",
                      revision, self._running.revision, why)
        self.problem = why
        return False
