"""Every migration walks down and up again, and the models match the migrated schema."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from appliance.db.engine import Store
from appliance.db.models import Base
from appliance.db.schema import comparable, downgrade, upgrade


def test_walk_down_and_up(store: Store) -> None:
    downgrade(store.engine, "base")
    assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    upgrade(store.engine)
    assert {"queue", "history", "users", "audit"} <= set(inspect(store.engine).get_table_names())


@pytest.mark.filterwarnings("ignore:.*expression-based index:UserWarning")
@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_models_match_migrations(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_object": comparable(conn.dialect.name)})
        diff = compare_metadata(context, Base.metadata)
    # Expression indexes (lower(sender)) cannot be reflected on SQLite; nothing else may differ.
    assert [d for d in diff if not (d[0] in ("add_index", "remove_index") and "_lc" in d[1].name)] == []
