"""Storage interfaces: what the domain needs from a database, nothing about SQL.

One interface per concept (apps, accounts, groups, members, messages). One implementation
of each (``apps.py`` ... ``messages.py``, composed in ``sql.SqlStore``) serves SQLite and
PostgreSQL through SQLAlchemy Core; what the dialects spell differently is in
``dialect.py``, how reads and writes reach the database in ``database.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from opentim.domain.apps import App
from opentim.domain.groups import Group, GroupType, Member


@dataclass(frozen=True, slots=True)
class AccountProfile:
    user_id: str
    nick: str | None = None  # None: leave the stored value as it is
    face_url: str | None = None


@dataclass(frozen=True, slots=True)
class Portrait:
    """An account's profile as stored: Tag_Profile_IM_Nick and Tag_Profile_IM_Image in
    their columns, every other tag that was set by its Tag_Profile_* name."""

    nick: str
    face_url: str
    tags: dict[str, str | int]


@dataclass(frozen=True, slots=True)
class NewMembers:
    """Members to add, as columns in request order; the accounts are distinct.

    Columns, not Member objects: a 300-member import builds four lists rather than 300
    objects, and the SQL store binds each list as one parameter.
    """

    accounts: list[str]
    roles: list[str]
    join_times: list[int]
    unread: list[int]

    @classmethod
    def joining(cls, accounts: list[str], role: str, join_time: int) -> NewMembers:
        """Accounts that all join now with the same role and nothing unread."""
        n = len(accounts)
        return cls(accounts, [role] * n, [join_time] * n, [0] * n)


@dataclass(frozen=True, slots=True)
class GroupMessage:
    from_account: str | None  # None: sent by the App admin as the group itself
    send_time: int
    random: int
    body: list[dict[str, Any]]  # MsgBody as the client sent it
    cloud_custom_data: str = ""
    priority: str = "Normal"  # MsgPriority


@dataclass(frozen=True, slots=True)
class GroupPage:
    group_ids: list[str]
    total: int
    next: int  # 0 when this was the last page


class AppStore(Protocol):
    async def create(self, app: App, *, now: int) -> None:
        """Raises KeyError when the SDKAppID exists."""

    async def save(self, app: App, *, now: int) -> None:
        """Replace an existing app's settings."""

    async def get(self, sdkappid: int) -> App | None: ...

    async def list_all(self) -> list[App]:
        """Every app, by SDKAppID."""


class AccountStore(Protocol):
    async def import_profiles(self, sdkappid: int, profiles: Sequence[AccountProfile],
                              *, now: int) -> None:
        """Create missing accounts, update the given fields of existing ones."""

    async def existing(self, sdkappid: int, user_ids: Sequence[str]) -> set[str]: ...

    async def mark_kicked(self, sdkappid: int, user_id: str, *, at: int) -> bool:
        """Refuse the account's UserSigs issued before ``at`` from now on; False if it
        does not exist."""

    async def kicked_at(self, sdkappid: int, user_id: str) -> int:
        """When the account was last kicked (0: never, or no such account)."""

    async def delete(self, sdkappid: int, user_ids: Sequence[str]) -> set[str]:
        """Delete accounts, their group memberships and ownerships; returns those that existed.

        Atomic: the memberships go in the same transaction, with each group's member count;
        groups they owned stay, with no owner.
        """

    async def profiles(self, sdkappid: int,
                       user_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(nick, face_url) of each existing account."""

    async def portraits(self, sdkappid: int, user_ids: Sequence[str]) -> dict[str, Portrait]:
        """The whole profile of each existing account, in one query."""

    async def set_portrait(self, sdkappid: int, user_id: str, *, nick: str | None,
                           face_url: str | None, tags: Mapping[str, str | int]) -> bool:
        """Set some profile tags of an existing account; False (nothing written) when it
        does not exist. ``None`` and tags left out keep their stored values. Atomic per
        account: concurrent calls setting different tags all persist."""


class GroupStore(Protocol):
    async def create(self, group: Group, members: Sequence[Member]) -> None:
        """Create a group with its initial members (accounts must exist).

        Raises ``errors.GroupIdInUse`` when the ID is taken.
        """

    async def get(self, sdkappid: int, group_ids: Sequence[str]) -> dict[str, Group]: ...

    async def destroy(self, sdkappid: int, group_id: str) -> bool:
        """Delete the group with its members and history; False if there was none."""

    async def list_page(self, sdkappid: int, *, limit: int, offset: int,
                        group_type: GroupType | None) -> GroupPage: ...

    async def modify_info(self, sdkappid: int, group_id: str,
                          plan: Callable[[Group], dict[str, Any]]) -> tuple[Group, Group]:
        """Set the columns ``plan`` returns for the group as stored, under its lock (none:
        no write); the group before and after. Raises ``errors.GroupNotFound``."""

    async def change_owner(self, sdkappid: int, group_id: str, new_owner: str, *,
                           check: Callable[[Group, str | None], None], now: int) -> Group:
        """Transfer ownership (the old owner becomes a Member) after ``check`` of the group
        and the new owner's role, under the group's lock; the group before."""

    async def count_owned(self, sdkappid: int, owner: str, group_type: GroupType) -> int: ...


class MemberStore(Protocol):
    async def get(self, sdkappid: int, group_id: str, *, limit: int | None,
                  offset: int = 0, after: tuple[int, str] | None = None,
                  roles: Sequence[str] = ()) -> list[Member]:
        """Members in join order; ``after`` is a (join_time, account) keyset cursor.

        ``unread_msg_num`` is derived: the group's message count minus the member's read
        mark ``msg_seq``.
        """

    async def roles(self, sdkappid: int, group_id: str,
                    accounts: Sequence[str]) -> dict[str, str]: ...

    async def accounts(self, sdkappid: int, group_id: str) -> list[str]:
        """Every member's account (who hears a non-AV group's messages)."""

    async def add(self, sdkappid: int, group_id: str,
                  prepare: Callable[[Group], NewMembers], *,
                  full_error: bool = False) -> dict[str, int]:
        """Add distinct accounts in one transaction; returns account -> MemberResult.

        ``prepare`` gets the group as read under its lock, in the same transaction, and
        returns the members to add; it holds the command's policy (which group types, which
        join times) and may raise to abort, writing nothing.

        Accounts that do not exist fail (0), members already in the group answer 2 and are
        left as they are, the others are added (1) with their role and join time. The cap
        is the group's ``max_member_num``: the new members that do not fit are the last ones
        in ``members`` order and fail (0); with ``full_error`` a group with no room at all
        raises ``errors.GroupFull`` instead. Unread counts are clamped to the group's message
        count (``next_msg_seq - 1``). Raises ``errors.GroupNotFound`` when the group is gone.
        These decisions are the functions of ``domain/imports.py``.
        """

    async def delete(self, sdkappid: int, group_id: str,
                     accounts: Sequence[str]) -> list[str]:
        """Remove members; returns the accounts that were members."""

    async def set_unread(self, sdkappid: int, group_id: str, account: str,
                         unread: int) -> bool:
        """Set a member's unread count (clamped to the message count); False if not a member."""

    async def modify(self, sdkappid: int, group_id: str, account: str,
                     plan: Callable[[Group, Member | None], dict[str, Any]]
                     ) -> tuple[Member | None, Member | None]:
        """Set the columns ``plan`` returns for the member row as stored (None: not a
        member), the group locked; the member before and after."""

    async def joined(self, sdkappid: int, account: str, *, types: Sequence[str],
                     with_inactive: bool, limit: int | None,
                     offset: int) -> tuple[int, list[tuple[Group, Member]]]:
        """(total, page) of the groups of these types ``account`` is a member of, in join
        order, each with its member row (custom fields left empty); in one query, never
        one per group."""

    async def joined_ids(self, sdkappid: int, account: str, *, types: Sequence[str],
                         with_inactive: bool, limit: int | None,
                         offset: int) -> tuple[int, list[str]]:
        """``joined`` with the group IDs alone."""


class GroupAttrStore(Protocol):
    """Group attributes (``group_attrs.py``)."""

    async def get(self, sdkappid: int, group_id: str) -> dict[str, str]: ...

    async def change(self, sdkappid: int, group_id: str,
                     apply: Callable[[dict[str, str]], dict[str, str]]) -> dict[str, str]:
        """Replace the group's attributes with ``apply(stored)``, under the group's lock
        (``apply`` may raise, writing nothing); the attributes after. Raises
        ``errors.GroupNotFound``."""


class MessageStore(Protocol):
    """Group message history. Every message takes the group's ``next_msg_seq``."""

    async def append(self, sdkappid: int, group_id: str, message: GroupMessage,
                     *, keep: bool, sender_must_be_member: bool) -> int | None:
        """Append one message now: returns its MsgSeq.

        Advances ``next_msg_seq`` and ``last_msg_time``; every member's unread count grows by
        one except the sender's (whose read mark moves with the message), at O(1) cost.
        ``keep=False`` (AVChatRoom) stores no history row. Returns None, changing nothing,
        when ``sender_must_be_member`` and the sender is not a member. Raises
        ``errors.GroupNotFound``.
        """

    async def import_history(self, sdkappid: int, group_id: str,
                             messages: Sequence[GroupMessage], *,
                             now: int) -> list[int | None]:
        """Append messages with their own times, in one transaction; returns each MsgSeq.

        History stays in time order: a message is kept only when its time is after the
        group's CreateTime and after the latest message (including the ones just kept),
        and before ``now``; otherwise its entry is None. When any is kept, every member's
        unread count becomes 0. Raises ``errors.GroupNotFound``.
        """

    async def delete_sent_before(self, sdkappid: int, before: int, *,
                                 limit: int = 10_000) -> int:
        """Delete up to ``limit`` of the app's messages sent before ``before`` (retention);
        returns how many were deleted."""


@dataclass(frozen=True, slots=True)
class SenderState:
    """What a send or a join needs to know of an account in a group."""

    role: str | None  # its member role; None when not a member (always, in an AVChatRoom)
    muted_until: int  # Unix seconds; 0 or past: not muted
    banned_until: int  # likewise


@dataclass(frozen=True, slots=True)
class StoredGroupMessage:
    msg_seq: int
    from_account: str | None
    send_time: int
    random: int
    body: list[dict[str, Any]]
    removed: int  # 0 kept, 1 deleted, 2 recalled (Tencent's IsPlaceMsg)
    cloud_custom_data: str = ""
    priority: str = "Normal"


class ModerationStore(Protocol):
    """Mutes and bans of group senders, and recall/deletion of group history."""

    async def sender_state(self, sdkappid: int, group_id: str, account: str) -> SenderState:
        """One read: the account's role, its mute (recorded or on its member row), its ban."""

    async def mute(self, sdkappid: int, group_id: str, accounts: Sequence[str],
                   until: int, *, now: int) -> None:
        """Mute until ``until`` (0 unmutes), on the record and on any member rows."""

    async def muted(self, sdkappid: int, group_id: str, *, now: int) -> list[tuple[str, int]]:
        """(account, muted until) of every account muted now, by account."""

    async def ban(self, sdkappid: int, group_id: str, accounts: Sequence[str], until: int,
                  description: str) -> None: ...

    async def unban(self, sdkappid: int, group_id: str, accounts: Sequence[str], *,
                    now: int) -> None: ...

    async def banned_page(self, sdkappid: int, group_id: str, *, now: int, limit: int,
                          offset: int) -> list[tuple[str, int]]:
        """(account, banned until) of the bans in force, in the order they end."""

    async def bans(self, sdkappid: int, group_id: str, *, now: int,
                   limit: int) -> dict[str, int]:
        """The bans in force (at most ``limit``, those ending first): account -> until."""

    async def history(self, sdkappid: int, group_id: str, *, lo: int,
                      hi: int) -> list[StoredGroupMessage]:
        """The kept rows with ``lo`` <= MsgSeq <= ``hi``, newest first."""

    async def messages(self, sdkappid: int, group_id: str,
                       seqs: Sequence[int]) -> dict[int, StoredGroupMessage]: ...

    async def mark_removed(self, sdkappid: int, group_id: str, seqs: Sequence[int],
                           how: int) -> set[int]:
        """Mark kept, not yet removed messages removed (1 deleted, 2 recalled), dropping
        their bodies; returns the seqs changed."""

    async def remove_by_sender(self, sdkappid: int, group_id: str, account: str, *,
                               from_seq: int, how: int) -> int:
        """Mark the kept messages of ``account`` with MsgSeq >= ``from_seq`` removed;
        returns how many."""


@dataclass(frozen=True, slots=True)
class C2CMessage:
    """A one-to-one message to keep (for one recipient or, batchsendmsg, for many)."""

    from_account: str
    msg_time: int
    msg_seq: int
    msg_random: int
    body: list[dict[str, Any]]
    cloud_custom_data: str = ""
    counts_unread: bool = True  # SendMsgControl NoUnread, importmsg SyncFromOldSystem 2
    sender_roam: bool = True  # SyncOtherMachine 2: not in the sender's history


@dataclass(frozen=True, slots=True)
class C2CRow:
    """A one-to-one message as admin_getroammsg reads it."""

    from_account: str
    to_account: str
    msg_time: int
    msg_seq: int
    msg_random: int
    body: list[dict[str, Any]]
    cloud_custom_data: str
    flag_bits: int  # 8: withdrawn


class WithdrawOutcome:
    WITHDRAWN = 0
    NOT_FOUND = 1  # no such stored message from this sender to this recipient
    ALREADY = 2


class C2CStore(Protocol):
    """One-to-one history per conversation, unread counters, read marks (``c2c.py``)."""

    async def store(self, sdkappid: int, message: C2CMessage,
                    to_accounts: Sequence[str]) -> list[str]:
        """Keep the message for each recipient, in one transaction; returns the recipients
        it was new for (a message already kept under the same MsgKey is not kept twice).
        Each new, counted message adds one to its recipient's unread count."""

    async def roam(self, sdkappid: int, operator: str, peer: str, *, min_time: int,
                   max_time: int, before: tuple[int, int, int] | None,
                   limit: int) -> tuple[list[C2CRow], bool]:
        """The newest ``limit`` messages of the conversation with times in [min_time,
        max_time], before the (seq, random, time) ``before`` key if given, that
        ``operator`` may see; newest first. And whether the range was read to its end."""

    async def read_times(self, sdkappid: int, accounts: Sequence[str],
                         peers: Sequence[str]) -> dict[tuple[str, str], int]:
        """(account, peer) -> the account's read mark (seconds) for messages from peer."""

    async def withdraw(self, sdkappid: int, from_account: str, to_account: str,
                       seq: int, random: int, time: int) -> int:
        """Flag a kept message withdrawn; a ``WithdrawOutcome``."""

    async def set_read(self, sdkappid: int, account: str, peer: str, read_time: int) -> None:
        """Messages from ``peer`` to ``account`` up to ``read_time`` are read."""

    async def unread_total(self, sdkappid: int, account: str) -> int: ...

    async def unread_of(self, sdkappid: int, account: str,
                        peers: Sequence[str]) -> dict[str, int]: ...

    async def delete_sent_before(self, sdkappid: int, before: int, *,
                                 limit: int = 10_000) -> int:
        """Retention: delete up to ``limit`` of the app's messages older than ``before``."""
