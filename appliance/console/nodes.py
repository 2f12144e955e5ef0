"""Which nodes the console talks to, and the fan-out client that reaches them.

The console is a client of the node's own SOAP API: every call carries the logged-in user's
credentials, so the API's access levels, throttling and audit log apply as for any client. On
a node in a cluster the members come from the cluster registry (clusterNodeList, asked of the
node itself); a member that does not answer is reported as such by the fan-out client and
never hides the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from appliance_client.cluster import Cluster
from appliance_client.errors import NodeError
from appliance_client.node import NodeSpec

from appliance.console.sessions import ConsoleSession

WHOLE_CLUSTER = ""
_MEMBERS_TTL = 5.0


@dataclasses.dataclass(frozen=True)
class Member:
    label: str  # the node's name (unique in a cluster; the serial is added when it is not)
    url: str  # its SOAP endpoint
    own: bool  # this node
    status: str = "up"  # what the registry says: up, stale, ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class NodeAccess:
    """How the console reaches nodes: this node's loopback URL and name, the TLS trust, the
    published WSDL the client builds requests from, and the timeouts of one page's calls."""

    own_url: Callable[[], str]
    own_name: Callable[[], str]
    own_serial: str
    wsdl: str
    own_ca_file: str | None = None  # trust for this node's certificate (its own, by default)
    member_ca_file: str | None = None  # trust for the other members (None: the system's)
    connect_timeout: float = 3.0
    timeout: float = 20.0


def items(value: object) -> list[Any]:
    """A SOAP array as zeep gives it (a list, None when empty, or wrapped in `item`)."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return list(getattr(value, "item", None) or [])


class Nodes:
    def __init__(self, access: NodeAccess) -> None:
        self.access = access
        self._lock = threading.Lock()
        self._members: dict[str, tuple[float, list[Member], NodeError | None]] = {}

    def own(self) -> Member:
        return Member(label=self.access.own_name(), url=self.access.own_url(), own=True)

    def spec(self, session: ConsoleSession, member: Member, *, timeout: float | None = None) -> NodeSpec:
        ca = self.access.own_ca_file if member.own else self.access.member_ca_file
        return NodeSpec(url=member.url, username=session.user, password=session.password,
                        name=member.label, verify=True, ca_file=ca,
                        connect_timeout=self.access.connect_timeout,
                        timeout=timeout or self.access.timeout)

    def members(self, session: ConsoleSession) -> tuple[list[Member], NodeError | None]:
        """This node, and the cluster's other members when it is in one (cached a few seconds
        per user). The error is the registry's, when the node could not list them."""
        now = time.monotonic()
        with self._lock:
            cached = self._members.get(session.user)
        if cached is not None and now - cached[0] < _MEMBERS_TTL:
            return cached[1], cached[2]
        own = self.own()
        found, error = [own], None
        cluster = Cluster([self.spec(session, own)], wsdl_source=self.access.wsdl)
        try:
            result = cluster.call("clusterNodeList")
        finally:
            cluster.close()
        if own.label in result.values:
            listed = items(result.values[own.label])
            names = [str(n.name or n.serial) for n in listed]
            for item in listed:
                if str(item.serial) == self.access.own_serial:
                    continue
                label = str(item.name or item.serial)
                if names.count(label) > 1 or label == own.label:
                    label = f"{label} ({item.serial})"
                if item.url:
                    found.append(Member(label=label, url=str(item.url), own=False,
                                        status=str(item.status or "")))
        else:
            failure = result.errors.get(own.label)
            # A node that is not in a cluster says so with a fault: it is a cluster of one.
            if failure is not None and "clustering is not available" not in failure.message:
                error = failure
        with self._lock:
            self._members[session.user] = (now, found, error)
        return found, error

    def forget(self) -> None:
        with self._lock:
            self._members.clear()

    def selected(self, session: ConsoleSession, choice: str | None) -> list[Member]:
        members, _ = self.members(session)
        wanted = session.node if choice is None else choice
        if wanted in ("", "all"):
            return members
        return [m for m in members if m.label == wanted] or members

    @contextlib.contextmanager
    def cluster(self, session: ConsoleSession, members: list[Member], *,
                timeout: float | None = None) -> Iterator[Cluster]:
        """A fan-out client for `members` with the session's credentials, closed afterwards."""
        cluster = Cluster([self.spec(session, m, timeout=timeout) for m in members],
                          wsdl_source=self.access.wsdl)
        try:
            yield cluster
        finally:
            cluster.close()
