"""core: queue, history, metadata, users, audit

Revision ID: 0001
Revises: 
"""

from alembic import op
import sqlalchemy as sa


revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("audit",
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("ts", sa.Float(), nullable=False),
    sa.Column("username", sa.String(length=128), nullable=False),
    sa.Column("remote", sa.String(length=64), nullable=False),
    sa.Column("operation", sa.String(length=64), nullable=False),
    sa.Column("arguments", sa.Text(), nullable=False),
    sa.Column("affected", sa.Integer(), nullable=False),
    sa.Column("outcome", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("id")
    )
    op.create_index("ix_audit_ts", "audit", ["ts"])

    op.create_table("history",
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("queueid", sa.Integer(), nullable=False),
    sa.Column("transfertime", sa.Float(), nullable=False),
    sa.Column("msgid", sa.String(length=36), nullable=False),
    sa.Column("ts0", sa.Float(), nullable=False),
    sa.Column("ts", sa.Float(), nullable=False),
    sa.Column("sender", sa.Text(), nullable=False),
    sa.Column("sender_domain", sa.String(length=255), nullable=False),
    sa.Column("rcpt", sa.Text(), nullable=False),
    sa.Column("rcpt_domain", sa.String(length=255), nullable=False),
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("listener", sa.String(length=64), nullable=False),
    sa.Column("transport", sa.String(length=64), nullable=False),
    sa.Column("fromserver", sa.String(length=64), nullable=False),
    sa.Column("helo", sa.Text(), nullable=False),
    sa.Column("sasl", sa.Text(), nullable=False),
    sa.Column("action", sa.String(length=16), nullable=False),
    sa.Column("quarantine", sa.String(length=64), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("error", sa.Text(), nullable=False),
    sa.Column("retries", sa.Integer(), nullable=False),
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("actionid", sa.Integer(), nullable=False),
    sa.Column("jobid", sa.String(length=64), nullable=False),
    sa.Column("score", sa.Float(), nullable=False),
    sa.Column("is_dsn", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sqlite_autoincrement=True,
    )
    op.create_index("ix_history_action", "history", ["action"])
    op.create_index("ix_history_msgid", "history", ["msgid"])
    op.create_index("ix_history_queueid", "history", ["queueid"])
    op.create_index("ix_history_rcpt_domain", "history", ["rcpt_domain"])
    op.create_index("ix_history_sender_domain", "history", ["sender_domain"])
    op.create_index("ix_history_ts0", "history", ["ts0"])

    op.create_table("node_info",
    sa.Column("key", sa.String(length=64), nullable=False),
    sa.Column("value", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("key")
    )
    op.create_table("queue",
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("state", sa.String(length=8), nullable=False),
    sa.Column("next_retry", sa.Float(), nullable=False),
    sa.Column("lease_until", sa.Float(), nullable=False),
    sa.Column("lease_owner", sa.String(length=64), nullable=False),
    sa.Column("msgid", sa.String(length=36), nullable=False),
    sa.Column("ts0", sa.Float(), nullable=False),
    sa.Column("ts", sa.Float(), nullable=False),
    sa.Column("sender", sa.Text(), nullable=False),
    sa.Column("sender_domain", sa.String(length=255), nullable=False),
    sa.Column("rcpt", sa.Text(), nullable=False),
    sa.Column("rcpt_domain", sa.String(length=255), nullable=False),
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("listener", sa.String(length=64), nullable=False),
    sa.Column("transport", sa.String(length=64), nullable=False),
    sa.Column("fromserver", sa.String(length=64), nullable=False),
    sa.Column("helo", sa.Text(), nullable=False),
    sa.Column("sasl", sa.Text(), nullable=False),
    sa.Column("action", sa.String(length=16), nullable=False),
    sa.Column("quarantine", sa.String(length=64), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("error", sa.Text(), nullable=False),
    sa.Column("retries", sa.Integer(), nullable=False),
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("actionid", sa.Integer(), nullable=False),
    sa.Column("jobid", sa.String(length=64), nullable=False),
    sa.Column("score", sa.Float(), nullable=False),
    sa.Column("is_dsn", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sqlite_autoincrement=True,
    )
    op.create_index("ix_queue_msgid", "queue", ["msgid"])
    op.create_index("ix_queue_rcpt_domain", "queue", ["rcpt_domain"])
    op.create_index("ix_queue_sender_domain", "queue", ["sender_domain"])
    op.create_index("ix_queue_state_next", "queue", ["state", "next_retry"])
    op.create_index("ix_queue_transport", "queue", ["transport"])
    op.create_index("ix_queue_ts0", "queue", ["ts0"])

    op.create_table("users",
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("name", sa.String(length=128), nullable=False),
    sa.Column("pwhash", sa.Text(), nullable=False),
    sa.Column("role", sa.String(length=16), nullable=False),
    sa.Column("operations", sa.Text(), nullable=False),
    sa.Column("restriction", sa.Text(), nullable=False),
    sa.Column("command_patterns", sa.Text(), nullable=False),
    sa.Column("created", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("name")
    )
    op.create_table("history_metadata",
    sa.Column("entry_id", sa.Integer(), nullable=False),
    sa.Column("key", sa.String(length=128), nullable=False),
    sa.Column("value", sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(["entry_id"], ["history.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("entry_id", "key")
    )
    op.create_index("ix_history_metadata_kv", "history_metadata", ["key", "value"])

    op.create_table("queue_metadata",
    sa.Column("entry_id", sa.Integer(), nullable=False),
    sa.Column("key", sa.String(length=128), nullable=False),
    sa.Column("value", sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(["entry_id"], ["queue.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("entry_id", "key")
    )
    op.create_index("ix_queue_metadata_kv", "queue_metadata", ["key", "value"])
    for table in ("queue", "history"):
        # Case-insensitive address equality (`from=`, `to=`) must use an index (API.md, HQL).
        op.create_index(f"ix_{table}_sender_lc", table, [sa.text("lower(sender)")])
        op.create_index(f"ix_{table}_rcpt_lc", table, [sa.text("lower(rcpt)")])


def downgrade() -> None:
    # Dropping a table drops its indexes.
    for table in ("queue_metadata", "history_metadata", "users", "queue", "node_info",
                  "history", "audit"):
        op.drop_table(table)
