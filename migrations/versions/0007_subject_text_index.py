"""subject text index: FTS5 (trigram) kept by triggers on SQLite, pg_trgm GIN on PostgreSQL

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FTS = "queue_subject_fts"  # appliance.db.models_hql.SUBJECT_FTS

# External content: the table holds only the index, the text stays in queue.subject; no
# positions (detail=none) and no sizes (columnsize=0), which makes each write cheaper: the
# compiler asks for trigrams AND'ed and lets LIKE check the exact pattern. The
# triggers run in the writer's own statement, so every insert, update and delete of a queue
# row (one by one, set-based bulk statements, ON DELETE CASCADE) keeps the index in step in
# the same transaction. An external-content delete must be given the old text.
_SQLITE_UP = [
    f"CREATE VIRTUAL TABLE {FTS} USING fts5(subject, content='queue', content_rowid='id', "
    "tokenize='trigram', detail=none, columnsize=0)",
    f"""CREATE TRIGGER {FTS}_insert AFTER INSERT ON queue BEGIN
        INSERT INTO {FTS}(rowid, subject) VALUES (new.id, new.subject);
    END""",
    f"""CREATE TRIGGER {FTS}_delete AFTER DELETE ON queue BEGIN
        INSERT INTO {FTS}({FTS}, rowid, subject) VALUES ('delete', old.id, old.subject);
    END""",
    f"""CREATE TRIGGER {FTS}_update AFTER UPDATE OF subject ON queue BEGIN
        INSERT INTO {FTS}({FTS}, rowid, subject) VALUES ('delete', old.id, old.subject);
        INSERT INTO {FTS}(rowid, subject) VALUES (new.id, new.subject);
    END""",
    # Backfill: index every entry already queued.
    f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in _SQLITE_UP:
            op.execute(statement)
        return
    # Trusted since PostgreSQL 13: the database owner may create it. The index build reads
    # (backfills) every existing subject.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_index("ix_queue_subject_trgm", "queue", ["subject"], postgresql_using="gin",
                    postgresql_ops={"subject": "gin_trgm_ops"})


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("update", "delete", "insert"):
            op.execute(f"DROP TRIGGER {FTS}_{trigger}")
        op.execute(f"DROP TABLE {FTS}")
        return
    op.drop_index("ix_queue_subject_trgm", table_name="queue")
    # pg_trgm stays: other objects in the database may use it, and upgrade tolerates it.
