"""queue: entries waiting for delivery carry action DELIVER (quarantined ones QUARANTINE)

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Entries queued before this revision have an empty action unless a policy quarantined them.
    op.execute("UPDATE queue SET action = 'QUARANTINE' WHERE action = '' AND quarantine <> ''")
    op.execute("UPDATE queue SET action = 'DELIVER' WHERE action = ''")


def downgrade() -> None:
    op.execute("UPDATE queue SET action = '' WHERE action = 'DELIVER'")
