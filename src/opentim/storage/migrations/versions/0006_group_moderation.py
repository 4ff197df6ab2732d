"""Mutes and bans of group senders (AVChatRoom bans, muted non-members), and what is left
of recalled and deleted group messages.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "group_restrictions",
        sa.Column("sdkappid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("group_id", sa.String(length=48), nullable=False),
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("muted_until", sa.BigInteger(), nullable=False),
        sa.Column("banned_until", sa.BigInteger(), nullable=False),
        sa.Column("ban_description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("sdkappid", "group_id", "account"),
    )
    op.create_index("ix_group_restrictions_banned", "group_restrictions",
                    ["sdkappid", "group_id", "banned_until", "account"])
    op.add_column("group_messages", sa.Column("removed", sa.SmallInteger(), nullable=False,
                                              server_default="0"))
    op.create_index("ix_group_messages_sender", "group_messages",
                    ["sdkappid", "group_id", "from_account"])
    op.create_index("ix_group_members_muted", "group_members",
                    ["sdkappid", "group_id", "shut_up_until"])


def downgrade() -> None:
    op.drop_index("ix_group_members_muted", table_name="group_members")
    op.drop_index("ix_group_messages_sender", table_name="group_messages")
    with op.batch_alter_table("group_messages") as batch:
        batch.drop_column("removed")
    op.drop_index("ix_group_restrictions_banned", table_name="group_restrictions")
    op.drop_table("group_restrictions")
