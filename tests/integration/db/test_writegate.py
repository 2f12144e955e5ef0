"""The store's write gate (appliance.db.writegate): one SQLite writer at a time across the
processes of a node, handed on when the holder lets go, and never held by a dead process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from appliance.db.engine import Store
from appliance.db.writegate import WriteGate
from appliance.errors import StoreUnavailable

REPO = Path(__file__).resolve().parents[3]

# A writer in another process: takes the gate, says so, and lets go when told (or is killed).
HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from appliance.db.writegate import WriteGate
    gate = WriteGate(Path(sys.argv[1]))
    assert gate.acquire(timeout=60)
    print("held", flush=True)
    sys.stdin.readline()
    gate.release()
    print("released", flush=True)
    sys.stdin.readline()
""")


class Holder:
    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "held\n"

    def release(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "released\n"

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=60)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def gate_path(tmp_path: Path) -> Path:
    return tmp_path / "appliance.db-writers"


def test_a_writer_of_another_process_waits_until_the_holder_lets_go(gate_path: Path) -> None:
    holder = Holder(gate_path)
    try:
        gate = WriteGate(gate_path)
        assert not gate.acquire(timeout=0.2)  # refused within its timeout, not after
        holder.release()
        assert gate.acquire(timeout=60)
        gate.release()
    finally:
        holder.end()


def test_a_holder_killed_in_its_transaction_blocks_nobody(gate_path: Path) -> None:
    holder = Holder(gate_path)
    try:
        os.kill(holder.proc.pid, signal.SIGKILL)
        holder.proc.wait(timeout=60)
        gate = WriteGate(gate_path)
        assert gate.acquire(timeout=60)  # the kernel let go of the dead process's lock
        gate.release()
    finally:
        holder.end()


def test_threads_queue_in_process_and_the_file_lock_follows_the_outermost_hold(
        gate_path: Path) -> None:
    gate = WriteGate(gate_path)
    assert gate.acquire(timeout=5)
    assert gate.acquire(timeout=5)  # re-entrant in the holding thread
    other: list[bool] = []
    thread = threading.Thread(target=lambda: other.append(gate.acquire(timeout=0.2)))
    thread.start()
    thread.join()
    assert other == [False]
    gate.release()
    assert not WriteGate(gate_path).acquire(timeout=0.2)  # still held: one release of two
    gate.release()
    second = WriteGate(gate_path)
    assert second.acquire(timeout=5)
    second.release()


def test_a_forked_child_has_a_lock_of_its_own(gate_path: Path) -> None:
    """fork shares open file descriptions, and flock belongs to one: a child that used the
    parent's would pass a gate its parent holds."""
    gate = WriteGate(gate_path)
    assert gate.acquire(timeout=5)
    try:
        pid = os.fork()
        if pid == 0:  # the child: refused while the parent holds it
            os._exit(0 if not gate.acquire(timeout=0.2) else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        gate.release()


def test_a_store_writer_that_finds_the_gate_taken_too_long_is_told_the_store_is_unavailable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gate.db'}")
    try:
        with store.transaction() as session:
            session.execute(text("CREATE TABLE t (a INTEGER)"))
        holder = Holder(tmp_path / "gate.db-writers")
        try:
            monkeypatch.setattr("appliance.db.engine.WRITER_WAIT", 0.2)
            with pytest.raises(StoreUnavailable, match="no write lock"):
                with store.transaction() as session:
                    session.execute(text("INSERT INTO t VALUES (1)"))
            holder.release()
            with store.transaction() as session:
                session.execute(text("INSERT INTO t VALUES (2)"))
            with store.transaction(read_only=True) as session:
                assert session.execute(text("SELECT a FROM t")).scalars().all() == [2]
        finally:
            holder.end()
    finally:
        store.dispose()


def test_a_gate_file_root_makes_belongs_to_the_owner_of_the_database(tmp_path: Path) -> None:
    """The CLI run as root must not leave a lock file the node's own user cannot open."""
    if os.geteuid() != 0:
        pytest.skip("only root can give a file away")
    database = tmp_path / "appliance.db"
    database.write_bytes(b"")
    os.chown(database, 65534, 65534)  # nobody
    gate = WriteGate(tmp_path / "appliance.db-writers", owner_of=database)
    assert gate.acquire(timeout=5)
    gate.release()
    made = (tmp_path / "appliance.db-writers").stat()
    assert (made.st_uid, made.st_gid) == (65534, 65534)


def test_a_gate_that_cannot_be_opened_is_a_clear_store_error(tmp_path: Path) -> None:
    gate = WriteGate(tmp_path / "missing" / "appliance.db-writers")
    with pytest.raises(StoreUnavailable, match="cannot open the write gate .*missing"):
        gate.acquire(timeout=5)
    (tmp_path / "missing").mkdir()  # the failure left no thread holding the gate
    assert gate.acquire(timeout=5)
    gate.release()
