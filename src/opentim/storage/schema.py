"""Tables, in SQLAlchemy Core, shared by SQLite and PostgreSQL.

Every row is keyed by ``sdkappid`` first: tenants never share a key range, and every index
starts with it. The migrations in ``migrations/versions`` create exactly these tables; this
module is what the queries are written against.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

apps = Table(
    "apps",
    metadata,
    Column("sdkappid", BigInteger, primary_key=True, autoincrement=False),
    Column("secret_key", String(128), nullable=False),
    Column("admins", JSON, nullable=False),
    Column("edition", String(16), nullable=False),
    Column("online_member_list", Boolean, nullable=False),
    Column("callback_url", Text),
    Column("callback_token", String(256)),
    Column("callback_commands", JSON),
    Column("rate_limit", Integer, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("sdkappid", BigInteger, primary_key=True, autoincrement=False),
    Column("user_id", String(32), primary_key=True),
    Column("nick", String(500), nullable=False, default=""),
    Column("face_url", String(500), nullable=False, default=""),
    Column("created_at", BigInteger, nullable=False),
)

groups = Table(
    "groups",
    metadata,
    Column("sdkappid", BigInteger, primary_key=True, autoincrement=False),
    Column("group_id", String(48), primary_key=True),
    Column("type", String(16), nullable=False),
    Column("name", String(64), nullable=False),
    Column("owner", String(32)),
    Column("introduction", Text, nullable=False, default=""),
    Column("notification", Text, nullable=False, default=""),
    Column("face_url", Text, nullable=False, default=""),
    Column("apply_join_option", String(16), nullable=False),
    Column("invite_join_option", String(16), nullable=False),
    Column("app_defined_data", JSON, nullable=False),
    Column("max_member_num", Integer),
    Column("member_num", Integer, nullable=False, default=0),
    Column("create_time", BigInteger, nullable=False),
    Column("info_seq", BigInteger, nullable=False, default=1),
    Column("last_info_time", BigInteger, nullable=False, default=0),
    Column("last_msg_time", BigInteger, nullable=False, default=0),
    Column("next_msg_seq", BigInteger, nullable=False, default=1),
    Column("shut_up_all", Boolean, nullable=False, default=False),
    Column("support_topic", Boolean, nullable=False, default=False),
)
# "Which groups does this account own": account deletion clears those ownerships, and
# without it would read every group of the app.
Index("ix_groups_owner", groups.c.sdkappid, groups.c.owner)

group_members = Table(
    "group_members",
    metadata,
    Column("sdkappid", BigInteger, primary_key=True, autoincrement=False),
    Column("group_id", String(48), primary_key=True),
    Column("member", String(32), primary_key=True),
    Column("role", String(8), nullable=False),
    Column("join_time", BigInteger, nullable=False),
    # The member's read mark: the seq of the last message counted as read. The unread count
    # is derived, (groups.next_msg_seq - 1) - msg_seq, so a new message costs O(1) and not an
    # UPDATE of every member of a 1M-member group.
    Column("msg_seq", BigInteger, nullable=False, default=0),
    Column("msg_flag", String(32), nullable=False, default="AcceptAndNotify"),
    Column("last_send_msg_time", BigInteger, nullable=False, default=0),
    Column("shut_up_until", BigInteger, nullable=False, default=0),
    Column("name_card", String(64), nullable=False, default=""),
    Column("app_member_defined_data", JSON),
)
# Member pages are read in join order; (join_time, member) is also the Community `Next` key.
Index(
    "ix_group_members_join",
    group_members.c.sdkappid,
    group_members.c.group_id,
    group_members.c.join_time,
    group_members.c.member,
)
# "Which groups is this user in" (per-user group quota, account deletion).
Index("ix_group_members_member", group_members.c.sdkappid, group_members.c.member)

group_messages = Table(
    "group_messages",
    metadata,
    Column("sdkappid", BigInteger, primary_key=True, autoincrement=False),
    Column("group_id", String(48), primary_key=True),
    Column("msg_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("from_account", String(32)),
    Column("send_time", BigInteger, nullable=False),
    Column("random", BigInteger, nullable=False, default=0),
    Column("msg_body", JSON, nullable=False),
)
