"""A bulk action scans for its entries without SQLite's write lock: intake commits meanwhile."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select

from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.queue.bulk import act_on_matching
from appliance.queue.intake import Intake
from appliance.queue.spool import Spool
from appliance.queue.store import enqueue
from appliance.types import Envelope, NewMessage, QueueState

NOW = 1_700_000_000.0


def _message(rcpt: str) -> NewMessage:
    return NewMessage(msgid=str(uuid.uuid4()),
                      envelope=Envelope(sender="a@example.com", recipients=(rcpt,),
                                        listener="inbound", client_ip="192.0.2.1", helo="scan.test"),
                      path="", size=10, received=NOW)


def test_intake_commits_while_a_bulk_action_scans(store: Store, tmp_path: Path) -> None:
    with store.transaction() as session:
        for i in range(20):
            enqueue(session, _message(f"r{i}@dest.example"), now=NOW)
    intake = Intake(store, Spool(tmp_path / "spool"), writers=2)
    intake.start()
    scanning, committed = threading.Event(), threading.Event()
    seen: dict[str, bool] = {}
    bulk_thread: list[threading.Thread] = []

    def hold_the_scan(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # The chunk scan of the bulk action: keep it running until an intake commit is done
        # (or 10 s passed, which is what a held write lock would make of it).
        if threading.current_thread() in bulk_thread and "ORDER BY queue.id" in statement \
                and not scanning.is_set():
            scanning.set()
            seen["committed during the scan"] = committed.wait(10)

    event.listen(store.engine, "before_cursor_execute", hold_the_scan)
    result: list[int] = []
    try:
        bulk = threading.Thread(target=lambda: result.append(act_on_matching(
            store, "helo~scan.test", "hold", now=NOW)))
        bulk_thread.append(bulk)
        bulk.start()
        assert scanning.wait(10)
        future = intake.submit(_message("new@dest.example"), b"Subject: x\r\n\r\nbody\r\n")
        accepted = future.result(timeout=10)  # as an SMTP session waits before its 250
        committed.set()
        bulk.join(30)
        assert not bulk.is_alive()
    finally:
        event.remove(store.engine, "before_cursor_execute", hold_the_scan)
        committed.set()
        intake.stop()
    assert seen == {"committed during the scan": True}
    assert result == [20]  # the new entry matched too, but arrived after the call started
    with store.transaction(read_only=True) as session:
        held = session.scalar(select(func.count()).select_from(QueueEntry)
                              .where(QueueEntry.state == QueueState.HOLD.value))
        assert held == 20
        assert session.get(QueueEntry, accepted.queue_ids[0]) is not None
