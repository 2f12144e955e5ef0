"""config: revisions, per-node overrides, cluster members

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("config_revision",
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("ts", sa.Float(), nullable=False),
    sa.Column("author", sa.String(length=128), nullable=False),
    sa.Column("comment", sa.Text(), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("id")
    )
    op.create_table("config_override",
    sa.Column("serial", sa.String(length=64), nullable=False),
    sa.Column("key", sa.String(length=255), nullable=False),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("ts", sa.Float(), nullable=False),
    sa.Column("author", sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint("serial", "key")
    )
    op.create_table("cluster_node",
    sa.Column("serial", sa.String(length=64), nullable=False),
    sa.Column("name", sa.String(length=128), nullable=False),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("joined", sa.Float(), nullable=False),
    sa.Column("lastseen", sa.Float(), nullable=False),
    sa.Column("revision", sa.Integer(), nullable=False),
    sa.Column("problem", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("serial")
    )
    op.create_index("ix_cluster_node_lastseen", "cluster_node", ["lastseen"])


def downgrade() -> None:
    op.drop_table("cluster_node")
    op.drop_table("config_override")
    op.drop_table("config_revision")
