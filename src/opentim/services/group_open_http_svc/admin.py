"""Group administration: modify_group_base_info, modify_group_member_info,
change_group_owner, get_joined_group_list, get_role_in_group.

The rules are in ``domain/group_admin.py``; the stores apply them under the group's lock.
Every change is told to the group's online audience by a gateway event
(``group_info_changed``, ``group_member_info_changed``, ``group_owner_changed``;
docs/client-protocol.md) and to the app by Tencent's after-callbacks
(``webhooks/payloads.py``). A request that changes nothing tells nobody.
"""

from __future__ import annotations

from typing import Any

import msgspec

from opentim import errors, messaging
from opentim.domain import group_admin as rules
from opentim.domain import moderation
from opentim.domain.groups import Group, Member
from opentim.events import GroupInfoChanged, GroupOwnerChanged, MemberFieldChanged
from opentim.protocol.dispatch import command
from opentim.protocol.fields import Int64, NonNegInt64, UInt32
from opentim.runtime import Context
from opentim.services.group_open_http_svc.common import SERVICE, event_time_ms, load_group
from opentim.services.group_open_http_svc.groups import KeyValue, base_info


async def _push(ctx: Context, group: Group, frame: dict[str, Any]) -> None:
    await messaging.push_to_group(ctx.runtime.events, group, frame)


# --- modify_group_base_info --------------------------------------------------------------


class ModifyGroupBaseInfo(msgspec.Struct):
    GroupId: str
    Name: str | None = None
    Introduction: str | None = None
    Notification: str | None = None
    FaceUrl: str | None = None
    MaxMemberNum: Int64 | None = None
    ApplyJoinOption: str | None = None
    InviteJoinOption: str | None = None
    MuteAllMember: str | None = None  # old name ShutUpAllMember
    AppDefinedData: list[KeyValue] | None = None
    From_Account: str | None = None  # the operator callbacks name (default: the App admin)


@command(SERVICE, "modify_group_base_info", ModifyGroupBaseInfo,
         legacy_fields=(("ShutUpAllMember", "MuteAllMember"),))
async def modify_group_base_info(ctx: Context, req: ModifyGroupBaseInfo) -> None:
    group = await load_group(ctx, req.GroupId)
    change = rules.plan_info_change(group.type, req, ctx.app.edition)
    now = ctx.now_s
    before, after = await ctx.store.groups.modify_info(
        ctx.sdkappid, group.group_id, lambda stored: rules.info_columns(stored, change, now))
    if after is before:
        return
    operator = req.From_Account or ctx.identifier
    reported = rules.callback_info_fields(change)
    if reported:
        await ctx.runtime.events.emit(GroupInfoChanged(
            ctx.sdkappid, group.group_id, group.type.value, operator,
            tuple(reported.items()), event_time_ms(ctx), ctx.origin))
    await _push(ctx, after, {"event": "group_info_changed", "GroupId": group.group_id,
                             "Operator_Account": operator, "InfoSeq": after.info_seq,
                             **change.fields})


# --- modify_group_member_info ------------------------------------------------------------


class ModifyGroupMemberInfo(msgspec.Struct):
    GroupId: str
    Member_Account: str
    Role: str | None = None
    MsgFlag: str | None = None
    NameCard: str | None = None
    MuteTime: UInt32 | None = None  # seconds, 0 unmutes (old name ShutUpTime)
    AppMemberDefinedData: list[KeyValue] | None = None
    TopicId: str | None = None


def _member_changes(before: Member, after: Member) -> dict[str, Any]:
    """What changed on the member row, by Tencent field name (MsgFlag, a member's own
    setting, is not told to the group)."""
    changed: dict[str, Any] = {}
    if after.role is not before.role:
        changed["Role"] = after.role.value
    if after.name_card != before.name_card:
        changed["NameCard"] = after.name_card
    if after.app_member_defined_data != before.app_member_defined_data:
        changed["AppMemberDefinedData"] = [
            {"Key": k, "Value": v} for k, v in after.app_member_defined_data.items()]
    return changed


@command(SERVICE, "modify_group_member_info", ModifyGroupMemberInfo,
         legacy_fields=(("ShutUpTime", "MuteTime"),))
async def modify_group_member_info(ctx: Context, req: ModifyGroupMemberInfo) -> None:
    moderation.check_no_topic(req.TopicId)
    group = await load_group(ctx, req.GroupId)
    rules.check_roster_target(group, "modify_group_member_info")
    change = rules.plan_member_change(group, req)
    account = req.Member_Account
    before, after = await ctx.store.members.modify(
        ctx.sdkappid, group.group_id, account,
        lambda stored, member: rules.member_columns(stored, member, account, change))
    assert before is not None and after is not None  # member_columns refused a non-member
    changed = _member_changes(before, after)
    if change.mute is not None:
        until = moderation.until(change.mute, ctx.now_s)
        await ctx.store.moderation.mute(ctx.sdkappid, group.group_id, [account], until,
                                        now=ctx.now_s)
        changed["ShutUpUntil"] = until
    if "Role" in changed or "NameCard" in changed:
        await ctx.runtime.events.emit(MemberFieldChanged(
            ctx.sdkappid, group.group_id, group.type.value, ctx.identifier, account,
            changed.get("Role"), changed.get("NameCard"), event_time_ms(ctx), ctx.origin))
    if changed:
        await _push(ctx, group, {"event": "group_member_info_changed",
                                 "GroupId": group.group_id, "Member_Account": account,
                                 "Operator_Account": ctx.identifier, **changed})


# --- change_group_owner ------------------------------------------------------------------


class ChangeGroupOwner(msgspec.Struct):
    GroupId: str
    NewOwner_Account: str
    From_Account: str | None = None


@command(SERVICE, "change_group_owner", ChangeGroupOwner)
async def change_group_owner(ctx: Context, req: ChangeGroupOwner) -> None:
    if not req.NewOwner_Account:
        raise errors.InvalidParameter("NewOwner_Account is empty")
    group = await load_group(ctx, req.GroupId)
    new_owner = req.NewOwner_Account
    before = await ctx.store.groups.change_owner(
        ctx.sdkappid, group.group_id, new_owner,
        check=lambda stored, role: rules.check_new_owner(stored, new_owner, role),
        now=ctx.now_s)
    if before.owner == new_owner:
        return
    operator = req.From_Account or ctx.identifier
    old_owner = before.owner or ""
    await ctx.runtime.events.emit(GroupOwnerChanged(
        ctx.sdkappid, group.group_id, group.type.value, operator, old_owner, new_owner,
        event_time_ms(ctx), ctx.origin))
    await _push(ctx, group, {"event": "group_owner_changed", "GroupId": group.group_id,
                             "Operator_Account": operator, "OldOwner_Account": old_owner,
                             "NewOwner_Account": new_owner})


# --- get_role_in_group -------------------------------------------------------------------


class GetRoleInGroup(msgspec.Struct):
    GroupId: str
    User_Account: list[str]


@command(SERVICE, "get_role_in_group", GetRoleInGroup)
async def get_role_in_group(ctx: Context, req: GetRoleInGroup) -> dict[str, Any]:
    group = await load_group(ctx, req.GroupId)
    rules.check_role_query(group, req.User_Account)
    roles = await ctx.store.members.roles(ctx.sdkappid, group.group_id, req.User_Account)
    return {"UserIdList": rules.role_list(req.User_Account, roles)}


# --- get_joined_group_list ---------------------------------------------------------------


class JoinedFilter(msgspec.Struct):
    GroupBaseInfoFilter: list[str] | None = None
    SelfInfoFilter: list[str] | None = None


class GetJoinedGroupList(msgspec.Struct):
    Member_Account: str
    Limit: NonNegInt64 | None = None
    Offset: NonNegInt64 = 0
    GroupType: str | None = None
    WithHugeGroups: Int64 = 0
    WithNoActiveGroups: Int64 = 0
    ResponseFilter: JoinedFilter | None = None


def _self_info(member: Member, fields: list[str]) -> dict[str, Any]:
    values = {"Role": member.role.value, "JoinTime": member.join_time,
              "MsgSeq": member.msg_seq, "MsgFlag": member.msg_flag,
              "LastSendMsgTime": member.last_send_msg_time,
              "ShutUpUntil": member.shut_up_until, "NameCard": member.name_card,
              "UnreadMsgNum": member.unread_msg_num}
    return {f: values[f] for f in fields}


@command(SERVICE, "get_joined_group_list", GetJoinedGroupList)
async def get_joined_group_list(ctx: Context, req: GetJoinedGroupList) -> dict[str, Any]:
    if not req.Member_Account:
        raise errors.InvalidParameter("Member_Account is empty")
    query = rules.joined_query(req.GroupType, req.WithHugeGroups, req.WithNoActiveGroups,
                               req.Limit, req.Offset)
    filt = req.ResponseFilter or JoinedFilter()
    if filt.SelfInfoFilter is not None:
        rules.check_self_info_filter(filt.SelfInfoFilter)
    where: dict[str, Any] = {"types": [t.value for t in query.types],
                             "with_inactive": query.with_inactive, "limit": query.limit,
                             "offset": query.offset}
    if filt.GroupBaseInfoFilter is None and filt.SelfInfoFilter is None:
        total, ids = await ctx.store.members.joined_ids(ctx.sdkappid, req.Member_Account,
                                                        **where)
        return {"TotalCount": total, "GroupIdList": [{"GroupId": g} for g in ids]}
    total, rows = await ctx.store.members.joined(ctx.sdkappid, req.Member_Account, **where)
    items = []
    for group, member in rows:
        item: dict[str, Any] = {"GroupId": group.group_id}
        if filt.GroupBaseInfoFilter is not None:
            keep = set(filt.GroupBaseInfoFilter)
            item.update((k, v) for k, v in base_info(group).items() if k in keep)
        if filt.SelfInfoFilter is not None:
            item["SelfInfo"] = _self_info(member, filt.SelfInfoFilter)
        items.append(item)
    return {"TotalCount": total, "GroupIdList": items}
