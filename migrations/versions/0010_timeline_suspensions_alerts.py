"""timeline: message events, queue suspensions, saved queries with alerts

Revision ID: 0010
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("msgid", sa.String(36), nullable=False),
        sa.Column("queueid", sa.Integer(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("ref", sa.String(36), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_message_events_msgid", "message_events", ["msgid", "ts"])
    op.create_index("ix_message_events_ref", "message_events", ["ref"])
    op.create_index("ix_message_events_queueid", "message_events", ["queueid"])
    op.create_table(
        "queue_suspensions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("filter", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("expires", sa.Float(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("ended", sa.Float(), nullable=False),
    )
    op.create_index("ix_queue_suspensions_state", "queue_suspensions", ["state", "expires"])
    op.create_table(
        "saved_queries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("filter", sa.Text(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("minutes", sa.Float(), nullable=False),
        sa.Column("mail_to", sa.Text(), nullable=False),
        sa.Column("webhook", sa.Text(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("since", sa.Float(), nullable=False),
        sa.Column("above_since", sa.Float(), nullable=False),
        sa.Column("last_count", sa.Integer(), nullable=False),
        sa.Column("last_checked", sa.Float(), nullable=False),
        sa.UniqueConstraint("owner", "name", name="uq_saved_queries_owner_name"),
    )


def downgrade() -> None:
    op.drop_table("saved_queries")
    op.drop_index("ix_queue_suspensions_state", table_name="queue_suspensions")
    op.drop_table("queue_suspensions")
    op.drop_index("ix_message_events_queueid", table_name="message_events")
    op.drop_index("ix_message_events_ref", table_name="message_events")
    op.drop_index("ix_message_events_msgid", table_name="message_events")
    op.drop_table("message_events")
