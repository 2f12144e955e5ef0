"""kill -9 of a real node at each step of intake, of bulk delete/bounce and of the bounce
notifier writing a bulk bounce's DSNs: after a restart and its spool sweep, no body is
orphaned, no entry lacks its body, nothing 250'd is lost, every DSN owed is queued once, and a
bulk action's audit row counts exactly the chunks that committed (issue 17, items 11 and 15);
a kill in the middle of a restore from the trash leaves each entry in the queue or in the
trash, never in both or neither."""

from __future__ import annotations

import smtplib
import socket
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.bounce.handling import bounce_all
from appliance.bounce.notices import pending
from appliance.crashpoint import ENV
from appliance.db.engine import Store
from appliance.db.models import AuditRecord, HistoryEntry, QueueEntry
from appliance.db.models_bounce import BounceNotice
from appliance.db.models_trash import TrashEntry
from appliance.queue.bulk import act_on_matching
from appliance.queue.spool import Spool
from appliance.queue.store import enqueue_many
from appliance.settings import default_database_url
from appliance.types import Envelope, NewMessage, QueueState
from tests.support.node import RunningNode

CHUNK = 500  # [queue] bulk_chunk of these nodes
BULK = CHUNK + CHUNK // 5  # two chunks: a full one and a short one
CONFIG = f"[queue]\nbulk_chunk = {CHUNK}\n"
BODY = b"From: s@src.test\r\nSubject: crash\r\n\r\nbody\r\n"


def _closed_port() -> int:
    """A loopback port nothing listens on: deliveries defer, the queue keeps its entries."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _store(node: RunningNode) -> Store:
    return Store(node.database_url or default_database_url(node.data_dir))


def _spool(node: RunningNode) -> Spool:
    return Spool(node.data_dir / "spool")


def _died_by_sigkill(node: RunningNode, timeout: float = 120.0) -> None:
    assert node.proc is not None
    node.proc.wait(timeout)
    assert node.proc.returncode == -9, node.output()[-3000:]
    node.proc = None


def _spool_state(node: RunningNode) -> tuple[set[str], set[str]]:
    """(files in the spool, paths queue entries refer to)."""
    store = _store(node)
    try:
        with store.transaction(read_only=True) as s:
            # The trash keeps the bodies of deleted entries (for a restore), a bounce notice
            # the body of its original until the DSN is written.
            referenced = (set(s.scalars(select(QueueEntry.path).distinct()))
                          | set(s.scalars(select(TrashEntry.path).distinct()))
                          | set(s.scalars(select(BounceNotice.path).distinct()))) - {""}
    finally:
        store.dispose()
    root = _spool(node).root
    files = {str(p.relative_to(root)) for p in root.glob("*/*") if p.is_file()}
    return files, referenced


def _wait_repaired(node: RunningNode, timeout: float = 120.0) -> set[str]:
    """Once no body is orphaned and every bounce notice has its DSN: the files."""
    deadline = time.monotonic() + timeout
    while True:
        files, referenced = _spool_state(node)
        if files == referenced and _pending(node) == 0:
            return files
        assert time.monotonic() < deadline, (len(files - referenced), len(referenced - files))
        time.sleep(0.1)


def _pending(node: RunningNode) -> int:
    store = _store(node)
    try:
        return pending(store)
    finally:
        store.dispose()


def _restart_repairing(node: RunningNode, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    # The crashed process wrote nothing after its death: no grace needed for this start's sweep.
    node.extra_args = ["--spool-sweep-grace", "0"]
    node.start()


@pytest.mark.parametrize("step", ["intake.spooled:4", "intake.committed:4"])
def test_kill_during_intake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    # One receiver: "the 4th message" is counted by the one process that takes them all.
    node = RunningNode(tmp_path, relay=("127.0.0.1", _closed_port()),
                       config_text="[smtp]\nprocesses = 1\n")
    monkeypatch.setenv(ENV, step)
    node.start()
    acked: list[str] = []
    try:
        for n in range(50):
            with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as client:
                client.ehlo("crash.example")
                client.mail("s@src.test")
                client.rcpt(f"r{n}@dst.test")
                code, reply = client.data(BODY)
            if code == 250:
                acked.append(reply.decode().rsplit(" ", 1)[1])
    except (OSError, smtplib.SMTPException):
        pass  # the node killed itself at the armed step
    _died_by_sigkill(node)
    assert len(acked) == 3  # the fourth message is the one the kill interrupted
    files, referenced = _spool_state(node)
    if step.startswith("intake.spooled"):
        assert len(files - referenced) == 1  # its body, durable but never committed
    _restart_repairing(node, monkeypatch)
    try:
        files = _wait_repaired(node)
        store = _store(node)
        with store.transaction(read_only=True) as s:
            held = set(s.scalars(select(QueueEntry.msgid))) | set(s.scalars(select(HistoryEntry.msgid)))
            errors = s.scalar(select(func.count()).select_from(HistoryEntry).where(HistoryEntry.action == "ERROR"))
        store.dispose()
        assert set(acked) <= held and errors == 0
        assert all((_spool(node).root / p).is_file() for p in files)
    finally:
        node.stop()


def _seed(node: RunningNode, n: int) -> None:
    """n held messages to bulk.test (one recipient each), bodies written through group commit."""
    store, spool = _store(node), _spool(node)
    messages = []
    with spool.batch() as batch:
        for i in range(n):
            msgid = str(uuid.uuid4())
            messages.append(NewMessage(
                msgid=msgid, envelope=Envelope(sender="s@src.test", recipients=(f"r{i}@bulk.test",)),
                path=batch.write(msgid, BODY), size=len(BODY), subject="crash",
                received=time.time(), transport="default", state=QueueState.HOLD))
    with store.transaction() as s:
        enqueue_many(s, messages, now=time.time())
    store.dispose()


def _client(node: RunningNode) -> zeep.Client:
    session = requests.Session()
    session.auth = ("admin", node.admin_password)
    return zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=session, timeout=300))


@pytest.mark.parametrize(("operation", "step"), [
    # chunk 1 committed (into the trash, which keeps its bodies)
    ("mailQueueDeleteBulk", "bulk.chunk.committed:1"),
    # chunk 2 acted on in its transaction, never committed: chunk 1 was tidied already
    ("mailQueueDeleteBulk", "bulk.chunk.acted:2"),
    # chunk 2's notices inserted, never committed; chunk 1's notices committed
    ("mailQueueBounceBulk", "bulk.chunk.acted:2"),
    # chunk 1's notices committed, holding its bodies for their DSNs
    ("mailQueueBounceBulk", "bulk.chunk.committed:1"),
])
def test_kill_during_bulk_action(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 operation: str, step: str) -> None:
    node = RunningNode(tmp_path, relay=("127.0.0.1", _closed_port()), config_text=CONFIG).start()
    node.stop()
    _seed(node, BULK)
    monkeypatch.setenv(ENV, step)
    node.start()
    client = _client(node)
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        getattr(client.service, operation)(filter="to~%@bulk.test")
    _died_by_sigkill(node)
    action = "DELETE" if operation == "mailQueueDeleteBulk" else "BOUNCE"
    store = _store(node)
    with store.transaction(read_only=True) as s:
        [row] = s.scalars(select(AuditRecord).where(AuditRecord.operation == operation)).all()
        acted = s.scalar(select(func.count()).select_from(HistoryEntry).where(HistoryEntry.action == action))
        left = s.scalar(select(func.count()).select_from(QueueEntry).where(QueueEntry.rcpt_domain == "bulk.test"))
    store.dispose()
    # The row was there before the first chunk and counts exactly what committed.
    assert (row.outcome, row.affected, acted, left) == ("started", CHUNK, CHUNK,
                                                        BULK - CHUNK)
    files, referenced = _spool_state(node)
    # What the kill left behind: a bulk action writes no body (its DSNs are written later, by
    # the bounce notifier, which may have been writing chunk 1's when the node died).
    assert referenced <= files
    if action == "DELETE":
        assert files == referenced
    _restart_repairing(node, monkeypatch)
    try:
        files = _wait_repaired(node)
        store = _store(node)
        with store.transaction(read_only=True) as s:
            dsns = s.scalar(select(func.count()).select_from(QueueEntry).where(QueueEntry.is_dsn == 1))
            errors = s.scalar(select(func.count()).select_from(HistoryEntry).where(HistoryEntry.action == "ERROR"))
            left = s.scalar(select(func.count()).select_from(QueueEntry).where(QueueEntry.rcpt_domain == "bulk.test"))
            trashed = s.scalar(select(func.count()).select_from(TrashEntry))
        store.dispose()
        assert errors == 0 and left == BULK - CHUNK
        assert dsns == (CHUNK if action == "BOUNCE" else 0)  # only committed chunks' DSNs
        assert trashed == (CHUNK if action == "DELETE" else 0)
        assert len(files) == left + dsns + trashed
    finally:
        node.stop()


def test_kill_while_the_bounce_notifier_writes_dsns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounced offline, so that the node's first notifier batch takes every notice: killed with
    their DSN bodies durable and nothing committed, the restarted node writes each DSN once."""
    node = RunningNode(tmp_path, relay=("127.0.0.1", _closed_port()), config_text=CONFIG).start()
    node.stop()
    _seed(node, BULK)
    store = _store(node)

    def bounce(session: Session, entries: Sequence[Any]) -> list[str]:
        return bounce_all(session, entries, reason="550 5.7.1 offline", now=time.time())

    assert act_on_matching(store, "to~%@bulk.test", "bounce", now=time.time(),
                           bounce_many=bounce) == BULK
    store.dispose()
    monkeypatch.setenv(ENV, "bounce.notices.written:1")
    node.start(wait=False)
    _died_by_sigkill(node)
    files, referenced = _spool_state(node)
    assert (len(files - referenced), len(referenced), _pending(node)) == (BULK, BULK, BULK)
    _restart_repairing(node, monkeypatch)
    try:
        files = _wait_repaired(node)
        store = _store(node)
        with store.transaction(read_only=True) as s:
            dsns = list(s.scalars(select(QueueEntry.rcpt).where(QueueEntry.is_dsn == 1)))
        store.dispose()
        assert (len(dsns), set(dsns)) == (BULK, {"s@src.test"}) and len(files) == BULK
    finally:
        node.stop()


def test_kill_during_restore_from_the_trash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = RunningNode(tmp_path, relay=("127.0.0.1", _closed_port()), config_text=CONFIG).start()
    try:
        assert _client(node).service.mailQueueDeleteBulk(filter="") == 0
    finally:
        node.stop()
    _seed(node, BULK)
    store = _store(node)
    with store.transaction(read_only=True) as s:
        ids = set(s.scalars(select(QueueEntry.id)))
    store.dispose()
    monkeypatch.setenv(ENV, "trash.restore.acted:2")
    node.start()
    client = _client(node)
    assert client.service.mailQueueDeleteBulk(filter="to~%@bulk.test") == BULK
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        client.service.mailTrashRestore(filter="to~%@bulk.test")
    _died_by_sigkill(node)
    store = _store(node)
    with store.transaction(read_only=True) as s:
        queued = set(s.scalars(select(QueueEntry.id)))
        trashed = set(s.scalars(select(TrashEntry.id)))
        [row] = s.scalars(select(AuditRecord).where(AuditRecord.operation == "mailTrashRestore")).all()
    store.dispose()
    # Chunk 1 restored and committed, chunk 2 never committed: still in the trash.
    assert len(queued) == CHUNK and queued | trashed == ids and not queued & trashed
    assert (row.outcome, row.affected) == ("started", CHUNK)
    files, referenced = _spool_state(node)
    assert files == referenced  # every body still there, none orphaned
    _restart_repairing(node, monkeypatch)
    try:
        assert _client(node).service.mailTrashRestore(filter="") == BULK - CHUNK
        store = _store(node)
        with store.transaction(read_only=True) as s:
            assert set(s.scalars(select(QueueEntry.id))) == ids
        store.dispose()
    finally:
        node.stop()
