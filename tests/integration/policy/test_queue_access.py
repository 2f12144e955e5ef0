"""mail(), queue metadata and queue_metric against a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import time

from sqlalchemy import select

from appliance.db.engine import Store
from appliance.db.models import HistoryMetadata, QueueEntry
from appliance.policy.flow import DeliveryInfo, DeliveryOutcome, SessionInfo
from appliance.policy.functions import Functions
from appliance.policy.queue import QueueMailer, StoreQueueAccess
from appliance.policy.scripted import ScriptedFlow
from appliance.queue import store as q
from appliance.queue.spool import Spool
from appliance.types import Action, Envelope, NewMessage


def _queue(store: Store, spool: Spool, rcpts: tuple[str, ...]) -> list[int]:
    path = spool.write("m-1", b"Subject: s\r\n\r\nbody\r\n")
    msg = NewMessage(msgid="m-1", envelope=Envelope(sender="s@example.org", recipients=rcpts, listener="in"),
                     path=path, size=20, received=time.time(), transport="default")
    with store.transaction() as s:
        return q.enqueue(s, msg, now=time.time())


def test_script_mail_queues_a_notification(store: Store, spool: Spool) -> None:
    kicked: list[int] = []
    mailer = QueueMailer(store, spool, hostname=lambda: "gw.example", on_enqueued=lambda: kicked.append(1))
    flow = ScriptedFlow("function connect(s) mail('', 'admin@example.com', 'Alert', 'client ' .. s.client_ip) end",
                        name="n", functions=Functions(mailer=mailer))
    flow.connect(SessionInfo(listener="in", client_ip="192.0.2.1"))
    with store.transaction(read_only=True) as s:
        [entry] = s.scalars(select(QueueEntry)).all()
        fields = (entry.sender, entry.rcpt, entry.subject, entry.transport)
        body = spool.read(entry.path)
    assert fields == ("", "admin@example.com", "Alert", "default")
    assert b"client 192.0.2.1" in body and b"Auto-Submitted: auto-generated" in body
    assert b"From: MAILER-DAEMON@gw.example" in body and kicked == [1]


def test_metadata_and_queue_metric_on_real_entries(store: Store, spool: Spool) -> None:
    a, _, _ = _queue(store, spool, ("x@busy.example", "y@busy.example", "z@Other.example"))
    access = StoreQueueAccess(store)
    assert access.queue_metric("domain", "BUSY.example") == 2
    assert access.queue_metric("sender", "s@example.org") == 3
    flow = ScriptedFlow(
        "function pre_delivery(e) set_metadata('n', tostring(queue_metric('domain', 'busy.example'))) end\n"
        "function post_delivery(e, o) set_metadata('outcome', o.action) end",
        name="m", functions=Functions(queue=access))
    info = DeliveryInfo(queueid=a, msgid="m-1", sender="s@example.org", recipient="x@busy.example",
                        transport="default", listener="in", sasl="", retries=0, metadata={})
    flow.pre_delivery(info)
    with store.transaction(read_only=True) as s:
        assert q.metadata_of(s, [a]) == {a: {"n": "2"}}
    with store.transaction() as s:  # delivered: the entry is gone, its history row remains
        q.finish(s, q.get_entry(s, a), Action.DELIVER, now=time.time())
    flow.post_delivery(info, DeliveryOutcome(action="DELIVER", code=250, text="ok", transfertime=0.1))
    with store.transaction(read_only=True) as s:
        rows = dict(s.execute(select(HistoryMetadata.key, HistoryMetadata.value)).all())
    assert rows == {"n": "2", "outcome": "DELIVER"}
