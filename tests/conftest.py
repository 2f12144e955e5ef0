"""Fixtures every test may use: stores on SQLite and on a real PostgreSQL server, a spool."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.db.engine import Store
from appliance.db.schema import upgrade
from appliance.queue.spool import Spool
from tests.support.postgres import PostgresServer

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str:
    """A database at the newest schema; each test's database is a fast copy of it."""
    url = pg_server.create_database("appliance_template")
    store = Store(url)
    upgrade(store.engine)
    store.dispose()
    return "appliance_template"


@pytest.fixture
def pg_url(pg_server: PostgresServer, pg_template: str) -> str:
    return pg_server.create_database(f"t{next(_db_counter)}", template=pg_template)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        store = Store(url)
        upgrade(store.engine)
        store.dispose()
        return url
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    try:
        yield s
    finally:
        s.dispose()


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")
