"""Member rules of group_open_http_svc: list sizes, what each group type allows, the
member-info page and cursor, and which import_group_member entries are taken.

Pure functions of their inputs (and ``now``); the handlers in
``services/group_open_http_svc/members.py`` call them by name. What the store decides inside
its transaction (the member cap, per-account results, the unread clamp) is in
``domain/imports.py``.

import_group_member, where Tencent is silent:

- The reply lists every request entry, in request order. An account repeated in one request
  is decided by its first entry alone; each later entry is ignored (its Role, JoinTime and
  UnreadMsgNum are not applied) and answers 2 when the account is a member after the
  request, else 0.
- When the group's MaxMemberNum leaves room for fewer members than the request brings, the
  earliest new members in request order are imported; the later ones answer 0. The request
  does not fail with 10014.
- A sent JoinTime must satisfy CreateTime < JoinTime <= now, else that entry answers 0 (even
  if the account is already a member). Without JoinTime the member joins now.
- Role may only be "Admin": any other value (even "Member") fails the whole request, 10004.
  UnreadMsgNum must be >= 0 (else 10004) and is clamped to the group's message count,
  NextMsgSeq - 1.
- All writes of one request commit in one transaction; a retried request answers 2 for the
  members the first attempt imported.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any, Protocol

from opentim import errors
from opentim.domain.accounts import USER_ID_MAX_BYTES
from opentim.domain.groups import Group, GroupType, Member, MemberResult, Role, check_group_id
from opentim.protocol.fields import INT64_MAX
from opentim.storage.base import NewMembers

ADD_MEMBER_MAX = 300
DELETE_MEMBER_MAX = 100
MEMBER_INFO_LIMIT_MAX = 6000
# Tencent's current import_group_member page says 300; older versions said 100 or 20.
IMPORT_MEMBER_MAX = 300

MEMBER_FIELDS = ("Role", "JoinTime", "MsgSeq", "MsgFlag", "LastSendMsgTime", "ShutUpUntil",
                 "NameCard", "UnreadMsgNum")
# UnreadMsgNum is an OpenTIM extension: listed only when a filter asks for it.
DEFAULT_MEMBER_FIELDS = MEMBER_FIELDS[:-1]


# --- add_group_member / delete_group_member --------------------------------------------


def accounts_to_add(group: Group, accounts: Sequence[str]) -> list[str]:
    """add_group_member's accounts, each once in request order."""
    if group.type is GroupType.AVCHATROOM:
        raise errors.NoPermission("members cannot be added to an AVChatRoom: they join")
    if not accounts:
        raise errors.InvalidParameter("MemberList is empty")
    if len(accounts) > ADD_MEMBER_MAX:
        raise errors.TooManyAccounts(f"MemberList has more than {ADD_MEMBER_MAX} members")
    return list(dict.fromkeys(accounts))


def check_delete(group: Group, accounts: Sequence[str]) -> None:
    """delete_group_member: not in an AVChatRoom, at most 100 accounts, never the owner."""
    if group.type is GroupType.AVCHATROOM:
        raise errors.InvalidParameter(
            "members cannot be removed from an AVChatRoom: mute them instead"
        )
    if not accounts:
        raise errors.InvalidParameter("MemberToDel_Account is empty")
    if len(accounts) > DELETE_MEMBER_MAX:
        raise errors.TooManyAccounts(
            f"MemberToDel_Account has more than {DELETE_MEMBER_MAX} accounts"
        )
    if group.owner and group.owner in accounts:
        raise errors.InvalidParameter(f"the group owner {group.owner!r} cannot be removed")


# --- get_group_member_info -------------------------------------------------------------


def member_page_limit(group: Group, limit: int | None, roles: Sequence[str]) -> int | None:
    """get_group_member_info's page size (None: every member): not for an AVChatRoom,
    Limit 0..6000 (0 or absent: all), MemberRoleFilter naming known roles."""
    if group.type is GroupType.AVCHATROOM:
        raise errors.NoPermission(
            "get_group_member_info does not apply to AVChatRoom groups: use get_members"
        )
    if limit is not None and not 0 <= limit <= MEMBER_INFO_LIMIT_MAX:
        raise errors.InvalidParameter(f"Limit must be between 0 and {MEMBER_INFO_LIMIT_MAX}")
    for role in roles:
        if role not in {r.value for r in Role}:
            raise errors.InvalidParameter(f"MemberRoleFilter has unknown role {errors.shown(role)}")
    return limit or None


def pages_by_cursor(group: Group) -> bool:
    """A Community pages its members with Next (a cursor), the other types with Offset."""
    return group.type is GroupType.COMMUNITY


def encode_next(member: Member) -> str:
    """The Next that continues after ``member``: its join time and account."""
    return base64.urlsafe_b64encode(f"{member.join_time}:{member.account}".encode()).decode()


def decode_next(token: str) -> tuple[int, str]:
    """The (join time, account) of a Next this server returned; 10004 for anything else.

    The token is client input that the NUL and integer checks of the body cannot see into,
    so its parts are held to what a member row can hold before they reach SQL.
    """
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    join_time, _, account = text.partition(":")
    if (join_time.isascii() and join_time.isdigit() and len(join_time) <= 19
            and int(join_time) <= INT64_MAX and account and account.isprintable()
            and len(account.encode()) <= USER_ID_MAX_BYTES):
        return int(join_time), account
    raise errors.InvalidParameter(
        f"Next {errors.shown(token)} is not a value this server returned")


# --- import_group_member ---------------------------------------------------------------


class ImportedMemberFields(Protocol):
    """An import_group_member MemberList entry, as the request carries it."""

    @property
    def Member_Account(self) -> str: ...
    @property
    def Role(self) -> str | None: ...
    @property
    def JoinTime(self) -> int | None: ...
    @property
    def UnreadMsgNum(self) -> int | None: ...


def check_import(group_id: str, items: Sequence[ImportedMemberFields]) -> None:
    """The checks before the store is asked: GroupId, 1..300 entries, Role only Admin."""
    check_group_id(group_id)
    if not items:
        raise errors.InvalidParameter("MemberList is empty")
    if len(items) > IMPORT_MEMBER_MAX:
        raise errors.TooManyAccounts(f"MemberList has more than {IMPORT_MEMBER_MAX} members")
    for item in items:
        if item.Role is not None and item.Role != Role.ADMIN:
            raise errors.InvalidParameter(
                f"Role {item.Role!r} of {item.Member_Account!r}: only Admin can be imported "
                "(leave Role out for an ordinary member)"
            )


def importable(group: Group, items: Sequence[ImportedMemberFields], now: int) -> NewMembers:
    """The first entry of each account whose JoinTime (if sent) is in (CreateTime, now].

    The store calls this under the group's lock, with the group read in the same
    transaction as the insert.
    """
    if group.type is GroupType.AVCHATROOM:
        raise errors.NoPermission("import_group_member does not apply to AVChatRoom groups")
    accounts = [item.Member_Account for item in items]
    if len(set(accounts)) == len(accounts) and all(
            item.JoinTime is None and item.Role is None and item.UnreadMsgNum is None
            for item in items):
        return NewMembers.joining(accounts, Role.MEMBER, now)  # a plain list: the bulk case
    seen: set[str] = set()
    new = NewMembers([], [], [], [])
    for item in items:
        account = item.Member_Account
        if account in seen:
            continue
        seen.add(account)
        join_time = item.JoinTime
        if join_time is not None and not group.create_time < join_time <= now:
            continue  # fails on its own JoinTime
        new.accounts.append(account)
        new.roles.append(item.Role or Role.MEMBER)
        new.join_times.append(now if join_time is None else join_time)
        new.unread.append(item.UnreadMsgNum or 0)
    return new


def import_replies(accounts: Sequence[str], results: dict[str, int]) -> list[dict[str, Any]]:
    """One entry per request entry; a repeated account's later entries answer 2 or 0."""
    failed = MemberResult.FAILED
    if len(set(accounts)) == len(accounts):
        return [{"Member_Account": a, "Result": results.get(a, failed)} for a in accounts]
    replies = []
    decided: set[str] = set()
    for account in accounts:
        result = results.get(account, failed)
        if account in decided and result != failed:
            result = MemberResult.ALREADY_MEMBER
        decided.add(account)
        replies.append({"Member_Account": account, "Result": result})
    return replies
