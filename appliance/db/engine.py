"""Engine and transactions: one Store per node, SQLite (WAL) by default or PostgreSQL by URL."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from appliance.errors import StoreUnavailable

log = logging.getLogger(__name__)

WRITER_WAIT = 30.0  # seconds a writer waits for SQLite's write lock (as busy_timeout)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the settings durability needs on each backend."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
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
        # SQLite has one writer at a time. Writers of this process queue on this lock and are
        # woken the moment the previous one commits; left to SQLite, a blocked BEGIN IMMEDIATE
        # sleeps in its busy handler (1, 2, 5, 10, ... ms) and wakes late. Other processes
        # (the CLI) still meet busy_timeout. Re-entrant, so a nested writer fails as before
        # (SQLITE_BUSY after busy_timeout) instead of deadlocking here.
        self._writer = threading.RLock() if self.is_sqlite else None

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextlib.contextmanager
    def transaction(self, *, read_only: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises.

        A failure to reach or write the store surfaces as StoreUnavailable, so that SMTP can
        answer 451 and SOAP a server fault without knowing the backend.
        """
        factory = self._read_sessions if read_only else self._sessions
        gate = None if read_only else self._writer
        if gate is not None and not gate.acquire(timeout=WRITER_WAIT):
            raise StoreUnavailable(f"store unavailable: no write lock within {WRITER_WAIT:.0f} s")
        try:
            with factory() as session, session.begin():
                yield session
        except (OperationalError, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not isinstance(exc, OperationalError):
                if not exc.connection_invalidated:
                    raise
            raise StoreUnavailable(f"store unavailable: {exc.orig}") from exc
        finally:
            if gate is not None:
                gate.release()

    def dispose(self) -> None:
        self.engine.dispose()
