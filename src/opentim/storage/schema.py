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
    SmallInteger,
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
    # Keywords of the declared custom profile tags (NULL: none), domain/profiles.py.
    Column("profile_custom_tags", JSON),
    Column("group_msg_rate", Integer, nullable=False, server_default="40"),
    Column("updated_at", BigInteger, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("sdkappid", BigInteger, primary_key=True, autoincrement=False),
    Column("user_id", String(32), primary_key=True),
    Column("nick", String(500), nullable=False, default=""),
    Column("face_url", String(500), nullable=False, default=""),
    # The profile's other tags, Tag_Profile_* name -> value (NULL: none set); nick and
    # face_url hold Tag_Profile_IM_Nick and Tag_Profile_IM_Image (storage/accounts.py).
    Column("profile", JSON),
    Column("created_at", BigInteger, nullable=False),
    # im_open_login_svc/kick: UserSigs issued before this (Unix seconds) no longer log in.
    Column("kicked_at", BigInteger, nullable=False, server_default="0"),
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
    Column("cloud_custom_data", Text, nullable=False, server_default=""),
    Column("msg_priority", String(8), nullable=False, server_default="Normal"),
    # What is left of the message (group_msg_get_simple's IsPlaceMsg): 0 the message,
    # 1 a hole (deleted), 2 recalled (group_msg_recall, delete_group_msg_by_sender).
    Column("removed", SmallInteger, nullable=False, default=0, server_default="0"),
)
# Retention deletes an app's messages older than its window.
Index("ix_group_messages_time", group_messages.c.sdkappid, group_messages.c.send_time)
# delete_group_msg_by_sender finds one sender's messages in a group.
Index("ix_group_messages_sender", group_messages.c.sdkappid, group_messages.c.group_id,
      group_messages.c.from_account)
# get_group_muted_account reads a group's muted members without reading every member.
Index("ix_group_members_muted", group_members.c.sdkappid, group_members.c.group_id,
      group_members.c.shut_up_until)

# Mutes and bans kept apart from the roster: an AVChatRoom has no member rows, and a muted
# member who leaves a group and joins again is still muted (Tencent). 0: none.
group_restrictions = Table(
    "group_restrictions",
    metadata,
    Column("sdkappid", BigInteger, primary_key=True, autoincrement=False),
    Column("group_id", String(48), primary_key=True),
    Column("account", String(32), primary_key=True),
    Column("muted_until", BigInteger, nullable=False, default=0),
    Column("banned_until", BigInteger, nullable=False, default=0),
    Column("ban_description", Text, nullable=False, default=""),
)
# get_group_ban_member pages a group's bans in the order they end.
Index("ix_group_restrictions_banned", group_restrictions.c.sdkappid,
      group_restrictions.c.group_id, group_restrictions.c.banned_until,
      group_restrictions.c.account)

# Group attributes (modify/set/delete/clear_group_attr, get_group_attr): at most 16 keys
# of 32 bytes per group, 16000 bytes together (domain/group_admin.py), so a group's rows
# are read whole by their primary key.
group_attrs = Table(
    "group_attrs",
    metadata,
    Column("sdkappid", BigInteger, primary_key=True, autoincrement=False),
    Column("group_id", String(48), primary_key=True),
    Column("attr_key", String(32), primary_key=True),
    Column("attr_value", Text, nullable=False),
)

# One-to-one history: one row per message, keyed by its conversation (the two accounts in
# order, user_a <= user_b) and its place in it (MsgTime, MsgSeq, MsgRandom: its MsgKey).
# Roam pages and withdrawals read the key alone, so they cost the same at any table size.
c2c_messages = Table(
    "c2c_messages",
    metadata,
    Column("sdkappid", BigInteger, primary_key=True, autoincrement=False),
    Column("user_a", String(32), primary_key=True),
    Column("user_b", String(32), primary_key=True),
    Column("msg_time", BigInteger, primary_key=True, autoincrement=False),
    Column("msg_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("msg_random", BigInteger, primary_key=True, autoincrement=False),
    Column("from_account", String(32), nullable=False),
    Column("msg_body", JSON, nullable=False),
    Column("cloud_custom_data", Text, nullable=False, default=""),
    Column("flag_bits", SmallInteger, nullable=False, default=0),  # MsgFlagBits: 8 withdrawn
    Column("counts_unread", Boolean, nullable=False, default=True),
    Column("sender_roam", Boolean, nullable=False, default=True),  # SyncOtherMachine != 2
)
# Retention deletes an app's messages older than its window, across conversations.
Index("ix_c2c_messages_time", c2c_messages.c.sdkappid, c2c_messages.c.msg_time)

# Per (account, peer): the unread counter of messages from peer and the read mark (seconds:
# messages up to it are read, admin_set_msg_read).
c2c_reads = Table(
    "c2c_reads",
    metadata,
    Column("sdkappid", BigInteger, primary_key=True, autoincrement=False),
    Column("account", String(32), primary_key=True),
    Column("peer", String(32), primary_key=True),
    Column("read_time", BigInteger, nullable=False, default=0),
    Column("unread", BigInteger, nullable=False, default=0),
)
