"""Group messages keep their CloudCustomData and MsgPriority; apps get a per-group message
rate (Tencent's default, 40 a second); messages are indexed by time for retention;
accounts remember when they were kicked (UserSigs issued before no longer log in).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("group_messages") as batch:
        batch.add_column(sa.Column("cloud_custom_data", sa.Text, nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("msg_priority", sa.String(8), nullable=False,
                                   server_default="Normal"))
    with op.batch_alter_table("apps") as batch:
        batch.add_column(sa.Column("group_msg_rate", sa.Integer, nullable=False,
                                   server_default="40"))
    op.create_index("ix_group_messages_time", "group_messages", ["sdkappid", "send_time"])
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("kicked_at", sa.BigInteger, nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("kicked_at")
    op.drop_index("ix_group_messages_time", table_name="group_messages")
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("group_msg_rate")
    with op.batch_alter_table("group_messages") as batch:
        batch.drop_column("msg_priority")
        batch.drop_column("cloud_custom_data")
