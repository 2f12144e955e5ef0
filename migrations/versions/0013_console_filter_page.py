"""console: saved views belong to a page (tracking, rates, ...)

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The rows saved before this revision are tracking filters.
    with op.batch_alter_table("console_filter") as batch:
        batch.add_column(sa.Column("page", sa.String(32), nullable=False, server_default="tracking"))
        batch.drop_constraint("uq_console_filter_user_name", type_="unique")
        batch.create_unique_constraint("uq_console_filter_user_page_name", ["username", "page", "name"])


def downgrade() -> None:
    with op.batch_alter_table("console_filter") as batch:
        batch.drop_constraint("uq_console_filter_user_page_name", type_="unique")
        batch.drop_column("page")
        batch.create_unique_constraint("uq_console_filter_user_name", ["username", "name"])
