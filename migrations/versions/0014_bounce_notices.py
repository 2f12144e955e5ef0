"""bounce notices: DSNs owed for bulk-bounced messages, written after the bounce commits

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bounce_notices",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("msgid", sa.String(36), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("ts0", sa.Float(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("transport", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
    )
    op.create_index("ix_bounce_notices_path", "bounce_notices", ["path"])


def downgrade() -> None:
    op.drop_index("ix_bounce_notices_path", "bounce_notices")
    op.drop_table("bounce_notices")
