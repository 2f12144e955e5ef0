"""queuestat over a real store (SQLite and PostgreSQL): counts by state and transport."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from appliance.commands.base import CommandContext
from appliance.commands.queuestat import counts_by_state_and_transport, render
from appliance.db.engine import Store
from appliance.queue import store as queue_store
from appliance.types import Envelope, NewMessage, QueueState
from tests.unit.commands.conftest import Run, run  # noqa: F401 (fixture)


def _queue(store: Store, n: int, *, transport: str, state: QueueState) -> None:
    with store.transaction() as session:
        for _ in range(n):
            msgid = str(uuid.uuid4())
            queue_store.enqueue(session, NewMessage(
                msgid=msgid, envelope=Envelope(sender="a@x.example", recipients=("b@y.example",)),
                path=f"{msgid[:2]}/{msgid}.eml", size=10, received=time.time(),
                transport=transport, state=state), now=time.time())


def test_counts_by_state_and_transport(store: Store, run: Run, tmp_path: Path) -> None:  # noqa: F811
    _queue(store, 3, transport="mx", state=QueueState.ACTIVE)
    _queue(store, 2, transport="mx", state=QueueState.DEFER)
    _queue(store, 1, transport="relay", state=QueueState.HOLD)
    with store.transaction(read_only=True) as session:
        counts = counts_by_state_and_transport(session)
    assert counts == {("ACTIVE", "mx"): 3, ("DEFER", "mx"): 2, ("HOLD", "relay"): 1}
    out = run(CommandContext(log_dir=tmp_path, store=store), ["queuestat"]).splitlines()
    assert out[0].split() == ["TRANSPORT", "ACTIVE", "DEFER", "HOLD", "TOTAL"]
    assert out[1].split() == ["mx", "3", "2", "0", "5"]
    assert out[2].split() == ["relay", "0", "0", "1", "1"]
    assert out[3].split() == ["total", "3", "2", "1", "6"]


def test_empty_queue_and_default_transport() -> None:
    assert render({}).splitlines()[-1].split() == ["total", "0", "0", "0", "0"]
    assert render({("ACTIVE", ""): 2}).splitlines()[1].split() == ["(default)", "2", "0", "0", "2"]
