"""Initial schema: apps, accounts, groups, members, messages.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("sdkappid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("secret_key", sa.String(128), nullable=False),
        sa.Column("admins", sa.JSON, nullable=False),
        sa.Column("edition", sa.String(16), nullable=False),
        sa.Column("online_member_list", sa.Boolean, nullable=False),
        sa.Column("callback_url", sa.Text),
        sa.Column("callback_token", sa.String(256)),
        sa.Column("callback_commands", sa.JSON),
        sa.Column("rate_limit", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "accounts",
        sa.Column("sdkappid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("nick", sa.String(500), nullable=False),
        sa.Column("face_url", sa.String(500), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "groups",
        sa.Column("sdkappid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("group_id", sa.String(48), primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(32)),
        sa.Column("introduction", sa.Text, nullable=False),
        sa.Column("notification", sa.Text, nullable=False),
        sa.Column("face_url", sa.Text, nullable=False),
        sa.Column("apply_join_option", sa.String(16), nullable=False),
        sa.Column("invite_join_option", sa.String(16), nullable=False),
        sa.Column("app_defined_data", sa.JSON, nullable=False),
        sa.Column("max_member_num", sa.Integer),
        sa.Column("member_num", sa.Integer, nullable=False),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.Column("info_seq", sa.BigInteger, nullable=False),
        sa.Column("last_info_time", sa.BigInteger, nullable=False),
        sa.Column("last_msg_time", sa.BigInteger, nullable=False),
        sa.Column("next_msg_seq", sa.BigInteger, nullable=False),
        sa.Column("shut_up_all", sa.Boolean, nullable=False),
        sa.Column("support_topic", sa.Boolean, nullable=False),
    )
    op.create_table(
        "group_members",
        sa.Column("sdkappid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("group_id", sa.String(48), primary_key=True),
        sa.Column("member", sa.String(32), primary_key=True),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("join_time", sa.BigInteger, nullable=False),
        sa.Column("msg_seq", sa.BigInteger, nullable=False),
        sa.Column("msg_flag", sa.String(32), nullable=False),
        sa.Column("last_send_msg_time", sa.BigInteger, nullable=False),
        sa.Column("shut_up_until", sa.BigInteger, nullable=False),
        sa.Column("name_card", sa.String(64), nullable=False),
        sa.Column("unread_msg_num", sa.BigInteger, nullable=False),
        sa.Column("app_member_defined_data", sa.JSON),
    )
    op.create_index(
        "ix_group_members_join", "group_members", ["sdkappid", "group_id", "join_time", "member"]
    )
    op.create_index("ix_group_members_member", "group_members", ["sdkappid", "member"])
    op.create_table(
        "group_messages",
        sa.Column("sdkappid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("group_id", sa.String(48), primary_key=True),
        sa.Column("msg_seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("from_account", sa.String(32)),
        sa.Column("send_time", sa.BigInteger, nullable=False),
        sa.Column("random", sa.BigInteger, nullable=False),
        sa.Column("msg_body", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    for table in ("group_messages", "group_members", "groups", "accounts", "apps"):
        op.drop_table(table)
