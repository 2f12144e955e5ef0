"""`appliance backup` of a running node and `appliance restore` into an empty data dir."""

from __future__ import annotations

import smtplib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.queue.spool import Spool
from tests.support.node import RunningNode
from tests.support.postgres import PostgresServer, free_port

# Tables whose rows a restore must give back exactly (stats and audit rows move on their own).
COMPARED = ("node_info", "queue", "queue_metadata", "history", "users", "config_revision")
CONFIG = """
[queue]
retry_schedule = [3600]
"""


def _rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            return {t: sorted(map(tuple, conn.execute(text(f"SELECT * FROM {t}"))), key=repr)
                    for t in COMPARED}
    finally:
        store.dispose()


def _wait(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _deferred(url: str) -> int:
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            return int(conn.scalar(text("SELECT count(*) FROM queue WHERE state = 'DEFER'")) or 0)
    finally:
        store.dispose()


def _send(port: int, count: int, tag: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        for i in range(count):
            client.sendmail("a@example.org", ["b@example.net", "c@example.com"],
                            f"Subject: {tag} {i}\r\n\r\nbody {tag} {i}\r\n".encode())


def _node(tmp_path: Path, database_url: str | None) -> RunningNode:
    tmp_path.mkdir(parents=True, exist_ok=True)
    # Nothing listens on the relay port: every entry is deferred for an hour.
    return RunningNode(tmp_path, database_url=database_url, config_text=CONFIG,
                       relay=("127.0.0.1", free_port()))


def _url(node: RunningNode) -> str:
    return node.database_url or f"sqlite:///{(node.data_dir / 'appliance.db').resolve()}"


def _roundtrip(tmp_path: Path, node: RunningNode, restored_url: str | None) -> None:
    with node:
        _send(node.smtp_port, 10, "quiet")
        assert node.cli("user", "add", "ops", "--role", "readonly", "--password-stdin",
                        input_text="secret-pw\n").returncode == 0
        _wait(lambda: _deferred(_url(node)) == 20, "20 deferred entries")
        done = node.cli("backup", str(tmp_path / "node.tar.gz"))
        assert done.returncode == 0, done.stderr
        assert "20 queue entries" in done.stdout
    before = _rows(_url(node))

    (tmp_path / "restored").mkdir()
    target = RunningNode(tmp_path / "restored", database_url=restored_url)
    done = target.cli("restore", str(tmp_path / "node.tar.gz"))
    assert done.returncode == 0, done.stderr
    after = _rows(_url(target))
    assert after == before
    spool, restored_spool = Spool(node.data_dir / "spool"), Spool(target.data_dir / "spool")
    for path in {row[0] for row in _paths(_url(target))}:
        assert restored_spool.resolve(path).read_bytes() == spool.resolve(path).read_bytes()


def _paths(url: str) -> list[tuple[str]]:
    store = Store(url)
    try:
        with store.transaction(read_only=True) as session:
            return [(p,) for p in session.scalars(select(QueueEntry.path))]
    finally:
        store.dispose()


def test_backup_and_restore_give_the_same_node_on_sqlite(tmp_path: Path) -> None:
    _roundtrip(tmp_path, _node(tmp_path / "a", None), None)


@pytest.mark.postgres
def test_backup_and_restore_give_the_same_node_on_postgresql(
        tmp_path: Path, pg_server: PostgresServer, pg_url: str) -> None:
    empty = pg_server.create_database(f"restored_{tmp_path.name[-20:]}".replace("-", "_"))
    _roundtrip(tmp_path, _node(tmp_path / "a", pg_url), empty)


def test_backup_under_load_restores_every_entry_with_its_body(tmp_path: Path) -> None:
    node = _node(tmp_path / "a", None)
    stop = threading.Event()
    sent: list[int] = []

    def load() -> None:
        while not stop.is_set():
            _send(node.smtp_port, 5, f"load{len(sent)}")
            sent.append(5)

    with node:
        sender = threading.Thread(target=load)
        sender.start()
        try:
            _wait(lambda: len(sent) >= 4, "mail flowing before the backup")
            done = node.cli("backup", str(tmp_path / "busy.tar.gz"))
            assert done.returncode == 0, done.stderr
            _wait(lambda: len(sent) >= 8, "mail flowing after the backup")
        finally:
            stop.set()
            sender.join(timeout=60)
    (tmp_path / "restored").mkdir()
    target = RunningNode(tmp_path / "restored")
    assert target.cli("restore", str(tmp_path / "busy.tar.gz")).returncode == 0
    spool = Spool(target.data_dir / "spool")
    paths = _paths(_url(target))
    assert len(paths) >= 40  # at least what was acknowledged before the backup began
    assert len(paths) < 2 * sum(sent)  # and not what came after it stopped
    store = Store(_url(target))
    try:
        with store.transaction(read_only=True) as session:
            for entry in session.scalars(select(QueueEntry)):
                assert spool.resolve(entry.path).stat().st_size == entry.size
    finally:
        store.dispose()


def test_restore_refuses_a_data_dir_that_is_not_empty(tmp_path: Path) -> None:
    node = _node(tmp_path / "a", None)
    with node:
        assert node.cli("backup", str(tmp_path / "n.tar.gz")).returncode == 0
    done = node.cli("restore", str(tmp_path / "n.tar.gz"))
    assert done.returncode == 1
    assert "not empty" in done.stderr
    (tmp_path / "junk.tar.gz").write_bytes(b"not a backup")
    (tmp_path / "b").mkdir()
    done = RunningNode(tmp_path / "b").cli("restore", str(tmp_path / "junk.tar.gz"))
    assert done.returncode != 0
    assert not (tmp_path / "b" / "node" / "appliance.db").exists()
