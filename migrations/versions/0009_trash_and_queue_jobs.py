"""queue: a trash for deleted entries (undo) and persisted throttled queue jobs (drains)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_MESSAGE_COLUMNS = [
    ("msgid", sa.String(length=36)), ("ts0", sa.Float()), ("ts", sa.Float()),
    ("sender", sa.Text()), ("sender_domain", sa.String(length=255)), ("rcpt", sa.Text()),
    ("rcpt_domain", sa.String(length=255)), ("subject", sa.Text()), ("size", sa.BigInteger()),
    ("listener", sa.String(length=64)), ("transport", sa.String(length=64)),
    ("fromserver", sa.String(length=64)), ("helo", sa.Text()), ("sasl", sa.Text()),
    ("action", sa.String(length=16)), ("quarantine", sa.String(length=64)),
    ("description", sa.Text()), ("error", sa.Text()), ("retries", sa.Integer()),
    ("path", sa.Text()), ("actionid", sa.Integer()), ("jobid", sa.String(length=64)),
    ("score", sa.Float()), ("is_dsn", sa.Integer()),
]


def upgrade() -> None:
    op.create_table(
        "trash",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("next_retry", sa.Float(), nullable=False),
        sa.Column("deleted", sa.Float(), nullable=False),
        sa.Column("deletedby", sa.String(length=128), nullable=False),
        *[sa.Column(name, type_, nullable=False) for name, type_ in _MESSAGE_COLUMNS],
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_trash_deleted", "trash", ["deleted"])
    op.create_index("ix_trash_path", "trash", ["path"])
    op.create_index("ix_trash_msgid", "trash", ["msgid"])
    op.create_index("ix_trash_ts0", "trash", ["ts0"])
    op.create_table(
        "trash_metadata",
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["trash.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("entry_id", "key"),
    )
    op.create_table(
        "queue_jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("filter", sa.Text(), nullable=False),
        sa.Column("restriction", sa.Text(), nullable=False),
        sa.Column("per_minute", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("credit", sa.Float(), nullable=False),
        sa.Column("last_tick", sa.Float(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("createdby", sa.String(length=128), nullable=False),
        sa.Column("finished", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_queue_jobs_state", "queue_jobs", ["state"])


def downgrade() -> None:
    op.drop_index("ix_queue_jobs_state", table_name="queue_jobs")
    op.drop_table("queue_jobs")
    op.drop_table("trash_metadata")
    for name in ("ix_trash_ts0", "ix_trash_msgid", "ix_trash_path", "ix_trash_deleted"):
        op.drop_index(name, table_name="trash")
    op.drop_table("trash")
