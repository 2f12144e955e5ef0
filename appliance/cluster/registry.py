"""Cluster members in the shared store: register, heartbeat, list with status, remove."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from appliance.db.models_config import ClusterNode
from appliance.errors import NotFound

Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True)
class NodeStatus:
    serial: str
    name: str
    url: str
    lastseen: float
    configrevision: int
    status: str  # "up" (heard from within stale_after seconds) or "stale"
    problem: str  # why it does not run the newest revision, "" when it does


def register(session: Session, *, serial: str, name: str, url: str, revision: int = 0,
             clock: Clock = time.time) -> None:
    """Add (or refresh) this node as a member."""
    now = clock()
    row = session.get(ClusterNode, serial)
    if row is None:
        session.add(ClusterNode(serial=serial, name=name, url=url, joined=now, lastseen=now,
                                revision=revision, problem=""))
    else:
        row.name, row.url, row.lastseen, row.revision = name, url, now, revision
    session.flush()


def heartbeat(session: Session, *, serial: str, revision: int, problem: str = "",
              name: str | None = None, url: str | None = None,
              clock: Clock = time.time) -> bool:
    """Record that the node is alive and what it runs; False when it is no longer a member."""
    values: dict[str, object] = {"lastseen": clock(), "revision": revision, "problem": problem}
    if name is not None:
        values["name"] = name
    if url is not None:
        values["url"] = url
    result = session.execute(update(ClusterNode).where(ClusterNode.serial == serial).values(**values))
    session.flush()
    return bool(_rowcount(result))


def is_member(session: Session, serial: str) -> bool:
    return session.get(ClusterNode, serial) is not None


def list_nodes(session: Session, *, stale_after: float = 15.0,
               clock: Clock = time.time) -> list[NodeStatus]:
    now = clock()
    rows = session.scalars(select(ClusterNode).order_by(ClusterNode.joined, ClusterNode.serial))
    return [
        NodeStatus(serial=r.serial, name=r.name, url=r.url, lastseen=r.lastseen,
                   configrevision=r.revision, problem=r.problem,
                   status="up" if now - r.lastseen <= stale_after else "stale")
        for r in rows
    ]


def remove(session: Session, *, serial: str) -> None:
    """Remove a member; that node notices at its next heartbeat and leaves by itself."""
    row = session.get(ClusterNode, serial)
    if row is None:
        raise NotFound(f"no cluster node with serial {serial!r}")
    session.delete(row)
    session.flush()


def _rowcount(result: object) -> int:
    """Rows an UPDATE/DELETE touched (execute() is typed as Result; DML gives a CursorResult)."""
    return int(getattr(result, "rowcount", 0) or 0)
