"""mailauth: DMARC evaluations, the input of the aggregate reports (RFC 7489 §7.2)

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dmarc_evaluations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("policy_domain", sa.String(255), nullable=False),
        sa.Column("header_from", sa.String(255), nullable=False),
        sa.Column("envelope_from", sa.String(255), nullable=False),
        sa.Column("source_ip", sa.String(64), nullable=False),
        sa.Column("disposition", sa.String(16), nullable=False),
        sa.Column("dkim_aligned", sa.String(8), nullable=False),
        sa.Column("spf_aligned", sa.String(8), nullable=False),
        sa.Column("override", sa.String(32), nullable=False),
        sa.Column("p", sa.String(16), nullable=False),
        sa.Column("sp", sa.String(16), nullable=False),
        sa.Column("pct", sa.Integer(), nullable=False),
        sa.Column("adkim", sa.String(1), nullable=False),
        sa.Column("aspf", sa.String(1), nullable=False),
        sa.Column("fo", sa.String(16), nullable=False),
        sa.Column("rua", sa.Text(), nullable=False),
        sa.Column("ruf", sa.Text(), nullable=False),
        sa.Column("spf_domain", sa.String(255), nullable=False),
        sa.Column("spf_scope", sa.String(8), nullable=False),
        sa.Column("spf_result", sa.String(16), nullable=False),
        sa.Column("dkim", sa.Text(), nullable=False),
    )
    op.create_index("ix_dmarc_evaluations_domain_ts", "dmarc_evaluations", ["policy_domain", "ts"])


def downgrade() -> None:
    op.drop_index("ix_dmarc_evaluations_domain_ts", table_name="dmarc_evaluations")
    op.drop_table("dmarc_evaluations")
