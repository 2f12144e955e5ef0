"""Follows the config store: applies new revisions, heartbeats, rides out shared-store outages."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from appliance.cluster import membership as local_state
from appliance.cluster import registry
from appliance.cluster.dsn import redacted
from appliance.cluster.membership import LastGood, Membership
from appliance.cluster.shared import StoreRouter
from appliance.config import overrides, revisions
from appliance.config.document import ConfigError, parse
from appliance.config.holder import ConfigHolder, Running
from appliance.db.engine import Store
from appliance.errors import ApplianceError, StoreUnavailable

log = logging.getLogger(__name__)

Identity = Callable[[], tuple[str, str]]  # (node name, API URL)


def fetch(store: Store, serial: str) -> tuple[int, str]:
    """The newest revision in `store` and its text with `serial`'s overrides written in."""
    with store.transaction(read_only=True) as session:
        revision = revisions.current_revision(session)
        if revision is None:
            raise StoreUnavailable("the config store holds no revision")
        text = revisions.text_get(session, revision=revision)
        local = overrides.overrides_of(session, serial)
    return revision, overrides.effective_text(text, local)


def initial_running(router: StoreRouter, serial: str, *, file_text: str | None,
                    clock: Callable[[], float] = time.time) -> Running:
    """What a starting node runs: the shared newest, else its last good, else its own newest."""
    with router.local.transaction() as session:
        revisions.seed(session, file_text=file_text, clock=clock)
        member = local_state.membership(session)
        good = local_state.last_good(session)
    if member is not None:
        try:
            revision, text = fetch(router.shared(member.dsn), serial)
            return Running(revision=revision, text=text, config=parse(text))
        except (ApplianceError, ConfigError) as exc:
            log.warning("cluster config unavailable at start (%s); running the last good one", exc)
            if good is not None:
                return Running(revision=good.revision, text=good.text, config=parse(good.text))
    try:
        revision, text = fetch(router.local, serial)
    except ConfigError as exc:  # this node's overrides do not fit: run the plain text
        log.error("node overrides refused at start: %s", exc)
        with router.local.transaction(read_only=True) as session:
            revision = revisions.current_revision(session) or 0
            text = revisions.text_get(session)
    return Running(revision=revision, text=text, config=parse(text))


class ConfigWatcher:
    """A node component (thread): each tick applies the newest revision and heartbeats.

    A local commit calls `wake()` and applies at once; other changes (another process, another
    cluster node) are found by polling every `cluster.poll_interval` seconds.
    """

    def __init__(self, router: StoreRouter, holder: ConfigHolder, serial: str, *,
                 identity: Identity, clock: Callable[[], float] = time.time,
                 follower: bool = False) -> None:
        self.router = router
        self.follower = follower  # applies revisions only: no heartbeat, no last-good record
        self.holder = holder
        self.serial = serial
        self._identity = identity
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = ""  # the shared-store error being ridden out, "" when connected
        self._last_heartbeat = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="config-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.router.close()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("config watcher tick failed")
            self._wake.wait(self.holder.config.cluster.poll_interval)
            self._wake.clear()

    def tick(self) -> None:
        """One round: look for a new revision, apply it, heartbeat (cluster members)."""
        member = self.router.membership()
        if member is None:
            self._offer(self.router.local, source="local")
            return
        try:
            shared = self.router.shared(member.dsn)
            self._offer(shared, source=redacted(member.dsn))
            if not self.follower:
                self._heartbeat(shared, member)
        except StoreUnavailable as exc:
            if not self._outage:
                log.warning("shared config store unreachable, running revision %d: %s",
                            self.holder.running.revision, exc)
            self._outage = str(exc)
            return
        if self._outage:
            log.info("shared config store reachable again")
            self._outage = ""

    def _offer(self, store: Store, *, source: str) -> None:
        try:
            revision, text = fetch(store, self.serial)
        except ConfigError as exc:
            self.holder.refuse(self.holder.running.revision + 1, f"node overrides: {exc}")
            return
        before = self.holder.running
        if self.holder.offer(revision, text) and self.holder.running is not before \
                and not self.follower:
            with self.router.local.transaction() as session:
                local_state.set_last_good(session, LastGood(revision=revision, text=text,
                                                            source=source))

    def _heartbeat(self, shared: Store, member: Membership) -> None:
        name, url = self._identity()
        with shared.transaction() as session:
            alive = registry.heartbeat(session, serial=self.serial, name=name, url=url,
                                       revision=self.holder.running.revision,
                                       problem=self.holder.problem, clock=self._clock)
            if not alive and not member.registered:
                registry.register(session, serial=self.serial, name=name, url=url,
                                  revision=self.holder.running.revision, clock=self._clock)
        if not alive and member.registered:
            self._removed()
        elif not alive:
            with self.router.local.transaction() as session:
                local_state.set_membership(session, Membership(dsn=member.dsn, registered=True))

    def _removed(self) -> None:
        """Another node removed this one: keep running its config as a local revision."""
        running = self.holder.running
        with self.router.local.transaction() as session:
            revision = revisions.text_set(session, text=running.text, author=f"node {self.serial}",
                                          comment="removed from the cluster", clock=self._clock)
            local_state.set_membership(session, None)
        log.warning("this node was removed from the cluster; running local revision %d", revision)
        self.holder.offer(revision, running.text)
