"""Schema management: create-and-stamp an empty store or upgrade an old one, under a lock."""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from appliance.resources import data_path

log = logging.getLogger(__name__)

MIGRATIONS_DIR = data_path("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


@contextlib.contextmanager
def _schema_lock(engine: Engine, conn: Connection) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_lock(7211001)"))
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(7211001)"))
        return
    db_path = engine.url.database
    if not db_path or db_path == ":memory:":
        yield
        return
    with open(f"{db_path}.schema-lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Bring the store to `revision` (all heads by default); safe to call from many nodes."""
    with engine.connect() as conn:
        with _schema_lock(engine, conn):
            conn.commit()
            command.upgrade(alembic_config(conn), revision)
            conn.commit()


def downgrade(engine: Engine, revision: str) -> None:
    with engine.connect() as conn:
        with _schema_lock(engine, conn):
            conn.commit()
            command.downgrade(alembic_config(conn), revision)
            conn.commit()


def ensure_schema(engine: Engine) -> None:
    upgrade(engine)
