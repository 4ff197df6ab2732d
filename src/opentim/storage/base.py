"""Storage interfaces: what the domain needs from a database, nothing about SQL.

One interface per concept (apps, accounts, groups, members, messages). One implementation
of each (``apps.py`` ... ``messages.py``, composed in ``sql.SqlStore``) serves SQLite and
PostgreSQL through SQLAlchemy Core; what the dialects spell differently is in
``dialect.py``, how reads and writes reach the database in ``database.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

    async def delete(self, sdkappid: int, user_ids: Sequence[str]) -> set[str]:
        """Delete accounts, their group memberships and ownerships; returns those that existed.

        Atomic: the memberships go in the same transaction, with each group's member count;
        groups they owned stay, with no owner.
        """

    async def profiles(self, sdkappid: int,
                       user_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(nick, face_url) of each existing account."""


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
