"""A small known queue and history for HQL, search, group-by and bulk tests."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.queue import store as qs
from appliance.types import Action, Envelope, NewMessage, QueueState

NOW = 1_700_000_000.0
MSGIDS = {name: str(uuid.UUID(int=i + 1, version=4)) for i, name in enumerate("abcd")}


def _message(session: Session, name: str, *, sender: str, rcpts: tuple[str, ...], age: float,
             **kw: object) -> list[int]:
    msg = NewMessage(
        msgid=MSGIDS[name], envelope=Envelope(sender=sender, recipients=rcpts, listener=str(kw.pop("listener", "inbound")),
                                              client_ip=str(kw.pop("ip", "192.0.2.1")), helo=str(kw.pop("helo", "mx.example.com")),
                                              sasl=str(kw.pop("sasl", ""))),
        path=f"{name}/{MSGIDS[name]}", received=NOW - age, **kw,  # type: ignore[arg-type]
    )
    return qs.enqueue(session, msg, now=NOW - age)


def seed(store: Store) -> dict[str, int]:
    """Queue entries keyed by recipient address -> queue id; also three history rows."""
    with store.transaction() as s:
        ids = _message(s, "a", sender="Alice@Example.COM", rcpts=("bob@dest.org", "Carol@Dest.ORG"),
                       age=60, size=1000, subject="Invoice 50_off", transport="mx", sasl="alice",
                       metadata={"score": "5", "Tag": "Blue"})
        ids += _message(s, "b", sender="", rcpts=("dave@other.net",), age=3600, size=2000,
                        subject="Delivery Status Notification", transport="relay", listener="outbound",
                        ip="198.51.100.7", is_dsn=True)
        ids += _message(s, "c", sender="eve@example.com", rcpts=("frank@dest.org",), age=86400, size=30000,
                        subject='50%off "sale"', transport="mx", state=QueueState.HOLD, quarantine="spam",
                        metadata={"score": "9", "Tag": "x_y"})
        ids += _message(s, "d", sender="mallory@evil.example", rcpts=("x@[192.0.2.9]", "y@dest.org.evil"),
                        age=600, size=500, subject="hello", transport="local", helo="EVIL")
        dave = s.get(QueueEntry, ids[2])
        assert dave is not None
        dave.state, dave.error, dave.retries, dave.actionid, dave.jobid = "DEFER", "451 4.7.1 greylisted", 3, 7, "job-1"
        s.flush()
        rcpts = [e.rcpt for e in s.query(QueueEntry).order_by(QueueEntry.id)]
        by_rcpt = dict(zip(rcpts, ids))
        # History: a delivery and a deferral of bob, the deletion of y (no longer queued).
        bob = s.get(QueueEntry, by_rcpt["bob@dest.org"])
        assert bob is not None
        qs.write_history(s, bob, Action.DEFER, now=NOW - 30, error="421 busy")
        y = s.get(QueueEntry, by_rcpt.pop("y@dest.org.evil"))
        assert y is not None
        qs.finish(s, y, Action.DELETE, now=NOW - 20)
        qs.write_history(s, bob, Action.DELIVER, now=NOW - 10, transfertime=1.5)
    return by_rcpt
