"""This node's own record of its cluster (kept in its local store, so it survives outages)."""

from __future__ import annotations

import dataclasses
import json

from sqlalchemy.orm import Session

from appliance.db.models import NodeInfo

_KEY = "cluster_membership"
_GOOD = "config_last_good"


@dataclasses.dataclass(frozen=True)
class Membership:
    dsn: str  # as given by the operator; see cluster.dsn.to_url
    registered: bool  # True once the shared store has accepted this node


def membership(session: Session) -> Membership | None:
    row = session.get(NodeInfo, _KEY)
    if row is None:
        return None
    data = json.loads(row.value)
    return Membership(dsn=data["dsn"], registered=bool(data.get("registered")))


def set_membership(session: Session, value: Membership | None) -> None:
    row = session.get(NodeInfo, _KEY)
    if value is None:
        if row is not None:
            session.delete(row)
    else:
        session.merge(NodeInfo(key=_KEY, value=json.dumps(dataclasses.asdict(value))))
    session.flush()


@dataclasses.dataclass(frozen=True)
class LastGood:
    revision: int
    text: str  # effective text (overrides written in)
    source: str  # "local" or the redacted DSN it came from


def last_good(session: Session) -> LastGood | None:
    row = session.get(NodeInfo, _GOOD)
    return None if row is None else LastGood(**json.loads(row.value))


def set_last_good(session: Session, value: LastGood) -> None:
    session.merge(NodeInfo(key=_GOOD, value=json.dumps(dataclasses.asdict(value))))
    session.flush()
