"""Groups: create_group, import_group, destroy_group, get_group_info, get_appid_group_list.

The rules each command applies are in ``domain/groups.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from opentim import errors
from opentim.domain import group_admin
from opentim.domain import groups as rules
from opentim.domain.groups import Group, GroupType
from opentim.domain.members import DEFAULT_MEMBER_FIELDS
from opentim.events import GroupCreated, GroupDestroyed
from opentim.protocol.dispatch import command
from opentim.protocol.fields import Int64, NonNegInt64
from opentim.runtime import Context
from opentim.services.group_open_http_svc.common import (
    SERVICE,
    event_time_ms,
    load_group,
    member_row,
)

# --- create_group / import_group -------------------------------------------------------


class KeyValue(msgspec.Struct):
    Key: str
    Value: str


class InitialMember(msgspec.Struct):
    Member_Account: str
    Role: str | None = None
    AppMemberDefinedData: list[KeyValue] = []


class CreateGroup(msgspec.Struct):
    Type: str
    Name: str
    Owner_Account: str | None = None
    GroupId: str | None = None
    Introduction: str = ""
    Notification: str = ""
    FaceUrl: str = ""
    MaxMemberCount: Int64 | None = None
    ApplyJoinOption: str | None = None
    InviteJoinOption: str | None = None
    AppDefinedData: list[KeyValue] = []
    MemberList: list[InitialMember] = []
    SupportTopic: Int64 = 0


class ImportGroup(CreateGroup):
    CreateTime: Int64 | None = None


async def _new_group(ctx: Context, req: CreateGroup, *, create_time: int,
                     before: Callable[[Group], Awaitable[None]] | None = None) -> Group:
    plan = rules.plan_group(req, ctx.app.edition, create_time)
    known = await ctx.store.accounts.existing(ctx.sdkappid, plan.accounts)
    group = rules.new_group(req, plan, sdkappid=ctx.sdkappid, known=known)
    if before is not None:
        await before(group)
    try:
        await ctx.store.groups.create(group, plan.roster)
    except errors.GroupIdInUse:
        existing = (await ctx.store.groups.get(ctx.sdkappid, [group.group_id])).get(
            group.group_id)
        if rules.owns_taken_id(existing, req.Owner_Account):
            raise errors.GroupIdInUseByOwner(group_id=group.group_id,
                                             owner=req.Owner_Account) from None
        raise
    return group


def _initial_members(req: CreateGroup) -> list[str]:
    """The MemberList accounts (not the owner), each once: the create callbacks' list."""
    return [a for a in dict.fromkeys(m.Member_Account for m in req.MemberList)
            if a and a != req.Owner_Account]


@command(SERVICE, "create_group", CreateGroup)
async def create_group(ctx: Context, req: CreateGroup) -> dict[str, Any]:
    async def ask_app(group: Group) -> None:
        """Group.CallbackBeforeCreateGroup, once the request passed every check."""
        webhooks = ctx.runtime.webhooks
        command_name = "Group.CallbackBeforeCreateGroup"
        if not webhooks.wants(ctx.app, command_name):
            return
        owner = group.owner or ""
        created = await ctx.store.groups.count_owned(ctx.sdkappid, owner, group.type) \
            if owner else 0
        reply = await webhooks.ask_before(ctx.app, command_name, {
            "CallbackCommand": command_name, "Operator_Account": ctx.identifier,
            "Owner_Account": owner, "Type": group.type.value, "Name": group.name,
            "CreateGroupNum": created,
            "MemberList": [{"Member_Account": a} for a in _initial_members(req)],
            "EventTime": event_time_ms(ctx)}, order_key=f"g:{group.group_id}",
            origin=ctx.origin)
        refusal = group_admin.create_refusal(reply)
        if refusal is not None:
            raise refusal

    group = await _new_group(ctx, req, create_time=ctx.now_s, before=ask_app)
    await ctx.runtime.events.emit(GroupCreated(
        ctx.sdkappid, group.group_id, group.type.value, ctx.identifier, group.owner or "",
        group.name, tuple(_initial_members(req)), tuple(group.app_defined_data.items()),
        event_time_ms(ctx), ctx.origin))
    return {"GroupId": group.group_id}


@command(SERVICE, "import_group", ImportGroup)
async def import_group(ctx: Context, req: ImportGroup) -> dict[str, Any]:
    create_time = rules.import_create_time(rules.parse_group_type(req.Type), req.CreateTime,
                                           ctx.now_s)
    return {"GroupId": (await _new_group(ctx, req, create_time=create_time)).group_id}


# --- destroy_group ---------------------------------------------------------------------


class GroupRef(msgspec.Struct):
    GroupId: str


@command(SERVICE, "destroy_group", GroupRef)
async def destroy_group(ctx: Context, req: GroupRef) -> None:
    group = await load_group(ctx, req.GroupId)
    # Group.CallbackAfterGroupDestroyed lists the members (not a Community's, Tencent; an
    # AVChatRoom keeps none): read before they go.
    members = None
    if group.type not in (GroupType.COMMUNITY, GroupType.AVCHATROOM):
        members = tuple(await ctx.store.members.accounts(ctx.sdkappid, group.group_id))
    if not await ctx.store.groups.destroy(ctx.sdkappid, group.group_id):
        raise errors.GroupNotFound(group_id=group.group_id)
    await ctx.runtime.events.emit(GroupDestroyed(
        ctx.sdkappid, group.group_id, group.type.value, ctx.identifier, event_time_ms(ctx),
        ctx.origin, owner=group.owner or "", name=group.name, members=members,
    ))


# --- get_group_info --------------------------------------------------------------------


class ResponseFilter(msgspec.Struct):
    GroupBaseInfoFilter: list[str] | None = None
    MemberInfoFilter: list[str] | None = None
    AppDefinedDataFilter_Group: list[str] | None = None
    AppDefinedDataFilter_GroupMember: list[str] | None = None


class GetGroupInfo(msgspec.Struct):
    GroupIdList: list[str]
    ResponseFilter: ResponseFilter | None = None


def base_info(group: Group) -> dict[str, Any]:
    """Every GroupBaseInfoFilter field of a group (get_group_info, get_joined_group_list)."""
    info: dict[str, Any] = {
        "GroupId": group.group_id,
        "Type": group.type.value,
        "Appid": group.sdkappid,
        "Name": group.name,
        "Introduction": group.introduction,
        "Notification": group.notification,
        "FaceUrl": group.face_url,
        "Owner_Account": group.owner or "",
        "CreateTime": group.create_time,
        "InfoSeq": group.info_seq,
        "LastInfoTime": group.last_info_time,
        "LastMsgTime": group.last_msg_time,
        "NextMsgSeq": group.next_msg_seq,
        "MemberNum": group.member_num,
        "MaxMemberNum": group.max_member_num,
        "ApplyJoinOption": group.apply_join_option,
        "InviteJoinOption": group.invite_join_option,
        "ShutUpAllMember": "On" if group.shut_up_all else "Off",
        # The current name of ShutUpAllMember: both are answered.
        "MuteAllMember": "On" if group.shut_up_all else "Off",
    }
    if group.type is GroupType.AVCHATROOM:
        # AV groups have no roster: members are live sessions (get_online_member_num).
        del info["MemberNum"], info["MaxMemberNum"], info["InviteJoinOption"]
    return info


@command(SERVICE, "get_group_info", GetGroupInfo)
async def get_group_info(ctx: Context, req: GetGroupInfo) -> dict[str, Any]:
    rules.check_group_id_list(req.GroupIdList)
    filt = req.ResponseFilter or ResponseFilter()
    valid = [g for g in req.GroupIdList if rules.is_well_formed_group_id(g)]
    found = await ctx.store.groups.get(ctx.sdkappid, valid)
    items = []
    for group_id in req.GroupIdList:
        group = found.get(group_id)
        if group is None:
            # Per item, with the code's own text: the item already names the group.
            code = errors.GroupNotFound if group_id in valid else errors.InvalidGroupId
            items.append({"GroupId": group_id, "ErrorCode": code.code,
                          "ErrorInfo": code.default_info})
            continue
        items.append(await _group_info_item(ctx, group, filt))
    return {"GroupInfo": items}


async def _group_info_item(ctx: Context, group: Group, filt: ResponseFilter) -> dict[str, Any]:
    base = base_info(group)
    if filt.GroupBaseInfoFilter is not None:
        keep = set(filt.GroupBaseInfoFilter) | {"GroupId"}
        base = {k: v for k, v in base.items() if k in keep}
    item: dict[str, Any] = {"ErrorCode": 0, "ErrorInfo": "", **base}
    data = group.app_defined_data
    if filt.AppDefinedDataFilter_Group is not None:
        data = {k: v for k, v in data.items() if k in filt.AppDefinedDataFilter_Group}
    item["AppDefinedData"] = [{"Key": k, "Value": v} for k, v in data.items()]
    if group.type is not GroupType.AVCHATROOM:
        fields = filt.MemberInfoFilter if filt.MemberInfoFilter is not None \
            else DEFAULT_MEMBER_FIELDS
        members = await ctx.store.members.get(ctx.sdkappid, group.group_id, limit=None)
        item["MemberList"] = [
            member_row(m, fields, filt.AppDefinedDataFilter_GroupMember) for m in members
        ]
    return item


# --- get_appid_group_list ---------------------------------------------------------------


class GetAppidGroupList(msgspec.Struct):
    Limit: Int64 = rules.GROUP_LIST_LIMIT_MAX
    Next: NonNegInt64 = 0
    GroupType: str | None = None


@command(SERVICE, "get_appid_group_list", GetAppidGroupList)
async def get_appid_group_list(ctx: Context, req: GetAppidGroupList) -> dict[str, Any]:
    rules.check_group_list_limit(req.Limit)
    group_type = rules.parse_group_type(req.GroupType) if req.GroupType else None
    page = await ctx.store.groups.list_page(ctx.sdkappid, limit=req.Limit, offset=req.Next,
                                       group_type=group_type)
    return {
        "TotalCount": page.total,
        "GroupIdList": [{"GroupId": g} for g in page.group_ids],
        "Next": page.next,
    }
