"""stats: stat() counters, pending mail actions (filled by a trigger on history), rate() hits

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Each history insert queues one pending action in the same transaction, so the stats
# flusher can fold it into the mail:action counters exactly once (see appliance/stats/actions.py).
_SQLITE_TRIGGER = """
CREATE TRIGGER stat_history_pending AFTER INSERT ON history
BEGIN
    INSERT INTO stat_pending_action (action, listener, domain)
    VALUES (NEW.action, NEW.listener, NEW.rcpt_domain);
END
"""
_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION stat_history_pending() RETURNS trigger AS $$
BEGIN
    INSERT INTO stat_pending_action (action, listener, domain)
    VALUES (NEW.action, NEW.listener, NEW.rcpt_domain);
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""
_PG_TRIGGER = """
CREATE TRIGGER stat_history_pending AFTER INSERT ON history
FOR EACH ROW EXECUTE FUNCTION stat_history_pending()
"""


def upgrade() -> None:
    op.create_table("stat_counter",
    sa.Column("key1", sa.String(length=255), nullable=False),
    sa.Column("key2", sa.String(length=255), nullable=False),
    sa.Column("key3", sa.String(length=255), nullable=False),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Column("created", sa.Float(), nullable=False),
    sa.Column("updated", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("key1", "key2", "key3")
    )
    op.create_table("stat_pending_action",
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("action", sa.String(length=16), nullable=False),
    sa.Column("listener", sa.String(length=64), nullable=False),
    sa.Column("domain", sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint("id")
    )
    op.create_table("rate_hit",
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("ns", sa.String(length=128), nullable=False),
    sa.Column("entry", sa.String(length=255), nullable=False),
    sa.Column("interval", sa.Integer(), nullable=False),
    sa.Column("ts", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("id")
    )
    op.create_index("ix_rate_hit_key_ts", "rate_hit", ["ns", "entry", "interval", "ts"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS stat_history_pending ON history")
        op.execute("DROP FUNCTION IF EXISTS stat_history_pending()")
    else:
        op.execute("DROP TRIGGER IF EXISTS stat_history_pending")
    op.drop_index("ix_rate_hit_key_ts", table_name="rate_hit")
    op.drop_table("rate_hit")
    op.drop_table("stat_pending_action")
    op.drop_table("stat_counter")
