"""bulk: drop the single-column domain indexes that the (domain, ts0) indexes of 0004 cover

Every queue entry and history row maintained both `ix_*_rcpt_domain` and `ix_*_rcpt_domain_ts0`
(and the same for the sender): the composite index answers the same equality and prefix
lookups, so the single-column ones only cost index maintenance (P4: a bulk delete or bounce
touches each entry's queue indexes and a new history row's).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("queue", "history"):
        op.drop_index(f"ix_{table}_sender_domain", table_name=table)
        op.drop_index(f"ix_{table}_rcpt_domain", table_name=table)


def downgrade() -> None:
    for table in ("queue", "history"):
        op.create_index(f"ix_{table}_rcpt_domain", table, ["rcpt_domain"])
        op.create_index(f"ix_{table}_sender_domain", table, ["sender_domain"])
