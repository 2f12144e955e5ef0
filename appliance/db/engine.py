"""Engine and transactions: one Store per node, SQLite (WAL) by default or PostgreSQL by URL."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from appliance.db.writegate import WriteGate
from appliance.errors import QueryTimeout, StoreUnavailable

log = logging.getLogger(__name__)

WRITER_WAIT = 30.0  # seconds a writer waits for SQLite's write lock (as busy_timeout)
# SQLite calls the progress handler every this many virtual-machine steps (tens of
# microseconds): often enough to stop on time, rarely enough to cost nothing measurable.
_PROGRESS_STEPS = 10000
_PG_QUERY_CANCELED = "57014"  # SQLSTATE of a statement stopped by statement_timeout


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the settings durability needs on each backend.

    The pool hands out the connection returned last (LIFO): a process's work then runs on the
    few connections it needs at once, their page caches and prepared statements warm, and the
    rest stay idle instead of each filling caches of their own in turn (FIFO)."""
    if url.startswith("sqlite"):
        if url not in ("sqlite://", "sqlite:///:memory:"):  # memory: one connection per thread
            kwargs.setdefault("pool_use_lifo", True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_use_lifo", True)
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (pysqlite recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before it returns, even across power loss.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the lock up front: a deferred transaction that upgrades to a writer
        # fails with SQLITE_BUSY at once instead of waiting for busy_timeout.
        if conn.get_execution_options().get("sqlite_read_only"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


class Store:
    """The node's store. Adapters own transactions: `with store.transaction() as s: ...`."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            self.engine.execution_options(sqlite_read_only=True), expire_on_commit=False
        )
        # SQLite has one writer at a time: writers of every process of the node queue at the
        # gate and are let in when the one before them commits (writegate.py). Re-entrant, so
        # a nested writer fails as before (SQLITE_BUSY after busy_timeout), not deadlocks.
        self._writer = _gate(self.engine) if self.is_sqlite else None
        # The statement timeout of this thread's transactions (statement_timeout()).
        self._local = threading.local()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextlib.contextmanager
    def statement_timeout(self, seconds: float | None) -> Iterator[None]:
        """Every transaction this thread opens inside the block is stopped with QueryTimeout
        when a statement runs longer than `seconds` (PostgreSQL's statement_timeout), or on
        SQLite when its statements are still running `seconds` after the transaction began
        (None: no limit). The API sets it per call, so a costly filter cannot hold a
        connection, or SQLite's write lock, for long."""
        before = getattr(self._local, "timeout", None)
        self._local.timeout = seconds
        try:
            yield
        finally:
            self._local.timeout = before

    @contextlib.contextmanager
    def transaction(self, *, read_only: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises.

        A failure to reach or write the store surfaces as StoreUnavailable, so that SMTP can
        answer 451 and SOAP a server fault without knowing the backend; a statement stopped by
        the thread's statement_timeout() surfaces as QueryTimeout.
        """
        factory = self._read_sessions if read_only else self._sessions
        gate = None if read_only else self._writer
        if gate is not None and not gate.acquire(timeout=WRITER_WAIT):
            raise StoreUnavailable(f"store unavailable: no write lock within {WRITER_WAIT:.0f} s")
        try:
            with factory() as session, session.begin():
                # The deadline ends before the commit: a commit is never interrupted.
                with self._deadline(session):
                    yield session
        except (OperationalError, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not isinstance(exc, OperationalError):
                if not exc.connection_invalidated:
                    raise
            raise StoreUnavailable(f"store unavailable: {exc.orig}") from exc
        finally:
            if gate is not None:
                gate.release()

    @contextlib.contextmanager
    def _deadline(self, session: Session) -> Iterator[None]:
        seconds = getattr(self._local, "timeout", None)
        if seconds is None:
            yield
            return
        if not self.is_sqlite:
            # Per statement, for this transaction only (SET LOCAL takes no bound parameters).
            session.execute(text("SELECT set_config('statement_timeout', :ms, true)"),
                            {"ms": str(max(1, int(seconds * 1000)))})
            try:
                yield
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) == _PG_QUERY_CANCELED:
                    raise _timeout(seconds) from exc
                raise
            return
        # SQLite has no statement timeout: a progress handler that answers non-zero past the
        # deadline makes the running statement fail with SQLITE_INTERRUPT.
        raw: Any = session.connection().connection.dbapi_connection
        deadline = time.monotonic() + seconds
        fired: list[bool] = []

        def progress() -> int:
            if time.monotonic() < deadline:
                return 0
            fired.append(True)
            return 1

        raw.set_progress_handler(progress, _PROGRESS_STEPS)
        try:
            yield
        except DBAPIError as exc:
            if fired:
                raise _timeout(seconds) from exc
            raise
        finally:
            raw.set_progress_handler(None, 0)

    def dispose(self) -> None:
        self.engine.dispose()


def _gate(engine: Engine) -> WriteGate:
    """The write gate of a SQLite store: its lock file beside the database file (none for a
    database in memory, which one process alone sees)."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return WriteGate(None)
    return WriteGate(Path(database + "-writers"), owner_of=Path(database))


def _timeout(seconds: float) -> QueryTimeout:
    return QueryTimeout(f"the query ran longer than the statement timeout ({seconds:g} s): "
                        "narrow the filter or raise api.statement_timeout")
