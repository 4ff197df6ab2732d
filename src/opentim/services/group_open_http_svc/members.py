"""Members: get_group_member_info, add_group_member, delete_group_member,
import_group_member, get_online_member_num.

The rules each command applies are in ``domain/members.py`` (import_group_member's, where
Tencent is silent, are listed there).
"""

from __future__ import annotations

from typing import Any

import msgspec

from opentim import errors
from opentim.domain import group_admin
from opentim.domain import members as rules
from opentim.domain.groups import Group, MemberResult, Role
from opentim.events import GroupFilled, MembersExited, MembersJoined
from opentim.protocol.dispatch import command
from opentim.protocol.fields import Int64, NonNegInt64
from opentim.runtime import Context
from opentim.services.group_open_http_svc.common import (
    SERVICE,
    event_time_ms,
    load_group,
    member_row,
)
from opentim.storage.base import NewMembers

# --- get_group_member_info -------------------------------------------------------------


class GetGroupMemberInfo(msgspec.Struct):
    GroupId: str
    Limit: Int64 | None = None
    Offset: NonNegInt64 = 0
    Next: str = ""
    MemberInfoFilter: list[str] | None = None
    MemberRoleFilter: list[str] = []
    AppDefinedDataFilter_GroupMember: list[str] | None = None


@command(SERVICE, "get_group_member_info", GetGroupMemberInfo)
async def get_group_member_info(ctx: Context, req: GetGroupMemberInfo) -> dict[str, Any]:
    group = await load_group(ctx, req.GroupId)
    limit = rules.member_page_limit(group, req.Limit, req.MemberRoleFilter)
    by_cursor = rules.pages_by_cursor(group)
    members = await ctx.store.members.get(
        ctx.sdkappid, group.group_id,
        limit=limit,
        offset=0 if by_cursor else req.Offset,
        after=rules.decode_next(req.Next) if by_cursor and req.Next else None,
        roles=req.MemberRoleFilter,
    )
    fields = req.MemberInfoFilter if req.MemberInfoFilter is not None \
        else rules.DEFAULT_MEMBER_FIELDS
    body: dict[str, Any] = {
        "MemberNum": group.member_num,
        "MemberList": [member_row(m, fields, req.AppDefinedDataFilter_GroupMember)
                       for m in members],
    }
    if by_cursor:
        full_page = limit is not None and len(members) == limit
        body["Next"] = rules.encode_next(members[-1]) if full_page and members else ""
    return body


# --- add_group_member / delete_group_member --------------------------------------------


class AccountRef(msgspec.Struct):
    Member_Account: str


class AddGroupMember(msgspec.Struct):
    GroupId: str
    MemberList: list[AccountRef]
    Silence: Int64 = 0


@command(SERVICE, "add_group_member", AddGroupMember)
async def add_group_member(ctx: Context, req: AddGroupMember) -> dict[str, Any]:
    group = await load_group(ctx, req.GroupId)
    accounts = rules.accounts_to_add(group, [m.Member_Account for m in req.MemberList])
    new = NewMembers.joining(accounts, Role.MEMBER, ctx.now_s)
    stored: list[Group] = []

    def prepare(current: Group) -> NewMembers:
        stored.append(current)  # as the add's transaction read it (Group.CallbackAfterGroupFull)
        return new

    try:
        results = await ctx.store.members.add(ctx.sdkappid, group.group_id, prepare,
                                              full_error=True)
    except errors.GroupFull:
        await ctx.runtime.events.emit(GroupFilled(ctx.sdkappid, group.group_id,
                                                  event_time_ms(ctx), ctx.origin))
        raise
    added = tuple(a for a, r in results.items() if r == MemberResult.ADDED)
    if stored and group_admin.fills(stored[0], len(added)):
        await ctx.runtime.events.emit(GroupFilled(ctx.sdkappid, group.group_id,
                                                  event_time_ms(ctx), ctx.origin))
    if added:
        await ctx.runtime.events.emit(MembersJoined(
            ctx.sdkappid, group.group_id, group.type.value, ctx.identifier, added, "Invited",
            event_time_ms(ctx), ctx.origin,
        ))
    return {"MemberList": [{"Member_Account": a, "Result": r} for a, r in results.items()]}


class DeleteGroupMember(msgspec.Struct):
    GroupId: str
    MemberToDel_Account: list[str]
    Silence: Int64 = 0
    Reason: str = ""


@command(SERVICE, "delete_group_member", DeleteGroupMember)
async def delete_group_member(ctx: Context, req: DeleteGroupMember) -> None:
    group = await load_group(ctx, req.GroupId)
    rules.check_delete(group, req.MemberToDel_Account)
    removed = await ctx.store.members.delete(ctx.sdkappid, group.group_id,
                                             req.MemberToDel_Account)
    if removed:
        await ctx.runtime.events.emit(MembersExited(
            ctx.sdkappid, group.group_id, group.type.value, ctx.identifier, tuple(removed),
            "Kicked", event_time_ms(ctx), ctx.origin,
        ))


# --- get_online_member_num --------------------------------------------------------------


class GetOnlineMemberNum(msgspec.Struct):
    GroupId: str


@command(SERVICE, "get_online_member_num", GetOnlineMemberNum)
async def get_online_member_num(ctx: Context, req: GetOnlineMemberNum) -> dict[str, Any]:
    """The exact online count of an AVChatRoom, from the presence store (no 10 s lag)."""
    from opentim.online import require_av_group

    await require_av_group(ctx.runtime.group_types, ctx.sdkappid, req.GroupId)
    count = await ctx.runtime.presence.count(ctx.sdkappid, req.GroupId, now=ctx.now)
    return {"OnlineMemberNum": count}


# --- import_group_member ---------------------------------------------------------------


class ImportedMember(msgspec.Struct):
    Member_Account: str
    Role: str | None = None
    JoinTime: Int64 | None = None
    UnreadMsgNum: NonNegInt64 | None = None


class ImportGroupMember(msgspec.Struct):
    GroupId: str
    MemberList: list[ImportedMember]


@command(SERVICE, "import_group_member", ImportGroupMember)
async def import_group_member(ctx: Context, req: ImportGroupMember) -> dict[str, Any]:
    rules.check_import(req.GroupId, req.MemberList)
    now = ctx.now_s

    def prepare(group: Group) -> NewMembers:
        # Runs under the group's lock: its type and CreateTime come from the same
        # transaction as the insert, with no separate read of the group.
        return rules.importable(group, req.MemberList, now)

    results = await ctx.store.members.add(ctx.sdkappid, req.GroupId, prepare)
    return {"MemberList": rules.import_replies([item.Member_Account for item in req.MemberList],
                                               results)}
