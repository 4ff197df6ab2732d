"""Index groups by (sdkappid, owner): account deletion clears the ownerships of the deleted
accounts, which without it reads every group of the app.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_groups_owner", "groups", ["sdkappid", "owner"])


def downgrade() -> None:
    op.drop_index("ix_groups_owner", table_name="groups")
