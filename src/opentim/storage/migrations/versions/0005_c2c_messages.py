"""One-to-one messages: history per conversation, unread counters and read marks.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "c2c_messages",
        sa.Column("sdkappid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("user_a", sa.String(32), primary_key=True),
        sa.Column("user_b", sa.String(32), primary_key=True),
        sa.Column("msg_time", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("msg_seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("msg_random", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("from_account", sa.String(32), nullable=False),
        sa.Column("msg_body", sa.JSON, nullable=False),
        sa.Column("cloud_custom_data", sa.Text, nullable=False),
        sa.Column("flag_bits", sa.SmallInteger, nullable=False),
        sa.Column("counts_unread", sa.Boolean, nullable=False),
        sa.Column("sender_roam", sa.Boolean, nullable=False),
    )
    op.create_index("ix_c2c_messages_time", "c2c_messages", ["sdkappid", "msg_time"])
    op.create_table(
        "c2c_reads",
        sa.Column("sdkappid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("account", sa.String(32), primary_key=True),
        sa.Column("peer", sa.String(32), primary_key=True),
        sa.Column("read_time", sa.BigInteger, nullable=False),
        sa.Column("unread", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("c2c_reads")
    op.drop_index("ix_c2c_messages_time", table_name="c2c_messages")
    op.drop_table("c2c_messages")
