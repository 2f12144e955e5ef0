"""hql: indexes for newest-first domain searches and spool-path lookups

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("queue", "history"):
        op.create_index(f"ix_{table}_rcpt_domain_ts0", table, ["rcpt_domain", "ts0"])
        op.create_index(f"ix_{table}_sender_domain_ts0", table, ["sender_domain", "ts0"])
    op.create_index("ix_queue_path", "queue", ["path"])


def downgrade() -> None:
    op.drop_index("ix_queue_path", table_name="queue")
    for table in ("queue", "history"):
        op.drop_index(f"ix_{table}_sender_domain_ts0", table_name=table)
        op.drop_index(f"ix_{table}_rcpt_domain_ts0", table_name=table)
