"""Cluster operations as the SOAP API and the CLI see them: create, join, leave, list, remove."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from appliance.cluster import membership as local_state
from appliance.cluster import registry
from appliance.cluster.dsn import redacted, to_url
from appliance.cluster.membership import Membership
from appliance.cluster.registry import NodeStatus
from appliance.cluster.shared import StoreRouter
from appliance.config import overrides, revisions
from appliance.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)


class Identity(Protocol):
    """What this node says about itself: its name and the URL of its SOAP API."""

    def __call__(self) -> tuple[str, str]: ...


class RemoteNode(Protocol):
    """Asks another node (by its API URL) to join a cluster; returns that node's serial."""

    def join(self, url: str, *, username: str, password: str, dsn: str) -> str: ...


class ClusterService:
    def __init__(self, router: StoreRouter, serial: str, identity: Identity, *,
                 running_revision: Callable[[], int] = lambda: 0, stale_after: float = 15.0,
                 clock: Callable[[], float] = time.time,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.router = router
        self.serial = serial
        self._identity = identity
        self._running = running_revision
        self._stale_after = stale_after
        self._clock = clock
        self._on_change = on_change

    def create(self, dsn: str) -> int:
        """Start a cluster at `dsn` with this node's newest revision; the shared revision id."""
        to_url(dsn)
        shared = self.router.shared(dsn)
        with self.router.local.transaction(read_only=True) as session:
            text = revisions.text_get(session)
        with shared.transaction() as session:
            if revisions.current_revision(session) is not None:
                raise Conflict(f"{redacted(dsn)} already holds a cluster: join it instead")
            revision = revisions.text_set(session, text=text, author=f"node {self.serial}",
                                          comment="cluster created", clock=self._clock)
        self._register(dsn, revision)
        return revision

    def join(self, dsn: str) -> int:
        """Join the cluster at `dsn`; this node then runs its shared config. The revision id."""
        to_url(dsn)
        member = self.router.membership()
        if member is not None and to_url(member.dsn) != to_url(dsn):
            raise Conflict("this node is in another cluster: leave it first")
        shared = self.router.shared(dsn)
        with shared.transaction(read_only=True) as session:
            revision = revisions.current_revision(session)
        if revision is None:
            raise NotFound(f"no cluster at {redacted(dsn)}: create one first")
        self._register(dsn, 0)
        return revision

    def leave(self) -> int:
        """Leave the cluster, keeping its newest config as a new local revision (its id)."""
        member = self._member()
        text = self._shared_text(member)
        with self.router.local.transaction() as session:
            if text is None:
                good = local_state.last_good(session)
                text = good.text if good is not None else revisions.text_get(session)
            revision = revisions.text_set(session, text=text, author=f"node {self.serial}",
                                          comment="left the cluster", clock=self._clock)
            local_state.set_membership(session, None)
        try:
            with self.router.shared(member.dsn).transaction() as session:
                registry.remove(session, serial=self.serial)
        except Exception as exc:  # the others will see it stale; an operator may remove it
            log.warning("left the cluster but could not unregister from the shared store: %s", exc)
        self._on_change()
        return revision

    def _shared_text(self, member: Membership) -> str | None:
        """The cluster's newest text with this node's overrides, None if unreachable."""
        try:
            with self.router.shared(member.dsn).transaction(read_only=True) as session:
                text = revisions.text_get(session)
                own = overrides.overrides_of(session, self.serial)
            return overrides.effective_text(text, own)
        except Exception as exc:
            log.warning("leaving without the shared store (%s): keeping the last good config", exc)
            return None

    def node_list(self) -> list[NodeStatus]:
        member = self.router.membership()
        if member is None:
            name, url = self._identity()
            return [NodeStatus(serial=self.serial, name=name, url=url, lastseen=self._clock(),
                               configrevision=self._running(), status="up", problem="")]
        with self.router.shared(member.dsn).transaction(read_only=True) as session:
            return registry.list_nodes(session, stale_after=self._stale_after, clock=self._clock)

    def node_add(self, url: str, *, username: str, password: str, remote: RemoteNode) -> str:
        """Ask the node at `url` to join this node's cluster; its serial."""
        member = self._member()
        serial = remote.join(url, username=username, password=password, dsn=member.dsn)
        with self.router.shared(member.dsn).transaction(read_only=True) as session:
            if not registry.is_member(session, serial):
                raise Conflict(f"the node at {url} answered but did not register")
        return serial

    def node_remove(self, serial: str) -> None:
        if serial == self.serial:
            self.leave()
            return
        member = self._member()
        with self.router.shared(member.dsn).transaction() as session:
            registry.remove(session, serial=serial)

    def _member(self) -> Membership:
        member = self.router.membership()
        if member is None:
            raise InvalidInput("this node is not in a cluster")
        return member

    def _register(self, dsn: str, revision: int) -> None:
        name, url = self._identity()
        with self.router.shared(dsn).transaction() as session:
            registry.register(session, serial=self.serial, name=name, url=url,
                              revision=revision, clock=self._clock)
        with self.router.local.transaction() as session:
            local_state.set_membership(session, Membership(dsn=dsn, registered=True))
        log.info("node %s joined the cluster at %s", self.serial, redacted(dsn))
        self._on_change()
