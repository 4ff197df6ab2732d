"""Group attributes: ``group_attrs`` (modify/set/delete/clear_group_attr, get_group_attr).

One row per (group, key); groups without attributes have none, so existing groups need
nothing.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "group_attrs",
        sa.Column("sdkappid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("group_id", sa.String(length=48), nullable=False),
        sa.Column("attr_key", sa.String(length=32), nullable=False),
        sa.Column("attr_value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("sdkappid", "group_id", "attr_key"),
    )


def downgrade() -> None:
    op.drop_table("group_attrs")
