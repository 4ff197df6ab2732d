"""``v4/group_open_http_svc``: groups, their members and their messages.

Request and response shapes follow protocol.md §4. add/delete_group_member emit on the event
bus (they notify); the import commands (import_group, import_group_member, import_group_msg)
and set_unread_msg_num never do.

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

Messages: a member's unread count is derived from its read mark (MsgSeq in
get_group_member_info): unread = (NextMsgSeq - 1) - MsgSeq. Sending a message therefore costs
O(1) whatever the group's size; every member's count grows except the sender's.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from opentim import errors
from opentim.domain import groups as rules
from opentim.domain.groups import Group, GroupType, Member, MemberResult, Role
from opentim.events import GroupDestroyed, MembersExited, MembersJoined
from opentim.protocol.body import nesting_exceeds
from opentim.protocol.dispatch import command, service
from opentim.protocol.fields import INT64_MAX, Int64, NonNegInt64, UInt32
from opentim.runtime import Context
from opentim.storage.base import GroupMessage, NewMembers

SERVICE = service(
    "group_open_http_svc",
    invalid_parameter=errors.InvalidParameter,
    internal_error=errors.GroupInternalError,
    unknown_command=errors.InvalidCommand,
)

ADD_MEMBER_MAX = 300
DELETE_MEMBER_MAX = 100
GROUP_INFO_MAX = 50
MEMBER_INFO_LIMIT_MAX = 6000
GROUP_LIST_LIMIT_MAX = 10000
ACCOUNT_MAX_BYTES = 32  # a UserID (im_open_login_svc)


async def load_group(ctx: Context, group_id: str) -> Group:
    """The group, or 10015 for an ID that cannot exist and 10010 for one that does not."""
    rules.check_group_id(group_id)
    found = (await ctx.store.get_groups(ctx.sdkappid, [group_id])).get(group_id)
    if found is None:
        raise errors.GroupNotFound(f"group {group_id!r} does not exist or has been dismissed")
    return found


def event_time_ms(ctx: Context) -> int:
    return int(ctx.now * 1000)


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


def _app_defined(items: list[KeyValue]) -> dict[str, str]:
    if len(items) > rules.APP_DEFINED_KEYS_MAX:
        raise errors.InvalidParameter(
            f"AppDefinedData has more than {rules.APP_DEFINED_KEYS_MAX} keys"
        )
    data: dict[str, str] = {}
    for item in items:
        rules.check_text("AppDefinedData Key", item.Key, rules.APP_DEFINED_KEY_MAX)
        rules.check_text("AppDefinedData Value", item.Value, rules.APP_DEFINED_VALUE_MAX)
        data[item.Key] = item.Value
    return data


def _option(value: str | None, allowed: type[Any], default: str, name: str) -> str:
    if value is None:
        return default
    if value not in {o.value for o in allowed}:
        raise errors.InvalidParameter(
            f"{name} must be one of {', '.join(o.value for o in allowed)}"
        )
    return value


async def _new_group(ctx: Context, req: CreateGroup, *, create_time: int) -> str:
    group_type = rules.parse_group_type(req.Type)
    if not req.Name:
        raise errors.InvalidParameter("Name is required")
    rules.check_text("Name", req.Name, rules.NAME_MAX)
    rules.check_text("Introduction", req.Introduction, rules.INTRODUCTION_MAX)
    rules.check_text("Notification", req.Notification, rules.NOTIFICATION_MAX)
    rules.check_text("FaceUrl", req.FaceUrl, rules.FACE_URL_MAX)
    is_av = group_type is GroupType.AVCHATROOM
    if is_av and req.MemberList:
        raise errors.NoPermission(
            "an AVChatRoom cannot be created with a MemberList: members join through clients"
        )
    if len(req.MemberList) > rules.CREATE_MEMBER_LIST_MAX:
        raise errors.TooManyAccounts(
            f"MemberList has more than {rules.CREATE_MEMBER_LIST_MAX} members"
        )
    cap = rules.member_cap(group_type, ctx.app.edition)
    max_members = cap
    if req.MaxMemberCount is not None and cap is not None:
        if not 0 < req.MaxMemberCount <= cap:
            raise errors.InvalidParameter(
                f"MaxMemberCount must be between 1 and {cap} for a {group_type} group"
            )
        max_members = req.MaxMemberCount
    group_id = (
        rules.check_custom_group_id(req.GroupId, group_type) if req.GroupId
        else rules.generate_group_id(group_type)
    )
    members = _initial_members(req, create_time)
    wanted = [m.account for m in members]
    known = await ctx.store.existing_accounts(ctx.sdkappid, wanted)
    missing = [a for a in wanted if a not in known]
    if missing:
        raise errors.AccountNotFound(f"accounts not imported: {', '.join(missing)}")
    if len(members) > (max_members or len(members)):
        raise errors.GroupFull(f"MemberList exceeds the group's {max_members} members")
    group = Group(
        sdkappid=ctx.sdkappid,
        group_id=group_id,
        type=group_type,
        name=req.Name,
        owner=req.Owner_Account or None,
        create_time=create_time,
        max_member_num=max_members,
        introduction=req.Introduction,
        notification=req.Notification,
        face_url=req.FaceUrl,
        apply_join_option=_option(
            req.ApplyJoinOption, rules.JoinOption,
            rules.JoinOption.FREE_ACCESS if is_av else rules.JoinOption.NEED_PERMISSION,
            "ApplyJoinOption",
        ),
        invite_join_option=_option(
            req.InviteJoinOption, rules.InviteOption, rules.InviteOption.FREE_ACCESS,
            "InviteJoinOption",
        ),
        app_defined_data=_app_defined(req.AppDefinedData),
        last_info_time=create_time,
        support_topic=bool(req.SupportTopic) and group_type is GroupType.COMMUNITY,
    )
    try:
        await ctx.store.create_group(group, [] if is_av else members)
    except errors.GroupIdInUse:
        existing = (await ctx.store.get_groups(ctx.sdkappid, [group_id])).get(group_id)
        if existing is not None and existing.owner and existing.owner == req.Owner_Account:
            raise errors.GroupIdInUseByOwner(
                f"group ID {group_id!r} is in use and {existing.owner!r} owns it"
            ) from None
        raise
    return group_id


def _initial_members(req: CreateGroup, join_time: int) -> list[Member]:
    """The owner first, then the MemberList in order (a repeated account counts once)."""
    members: dict[str, Member] = {}
    if req.Owner_Account:
        members[req.Owner_Account] = Member(req.Owner_Account, Role.OWNER, join_time)
    for item in req.MemberList:
        role = Role.MEMBER if item.Role is None else item.Role
        if role not in (Role.ADMIN, Role.MEMBER):
            raise errors.InvalidParameter(
                f"Role {errors.shown(item.Role)} of {errors.shown(item.Member_Account)} "
                "must be Admin or Member"
            )
        if item.Member_Account and item.Member_Account not in members:
            members[item.Member_Account] = Member(
                item.Member_Account, Role(role), join_time,
                app_member_defined_data=_app_defined(item.AppMemberDefinedData),
            )
    return list(members.values())


@command(SERVICE, "create_group", CreateGroup)
async def create_group(ctx: Context, req: CreateGroup) -> dict[str, Any]:
    return {"GroupId": await _new_group(ctx, req, create_time=ctx.now_s)}


@command(SERVICE, "import_group", ImportGroup)
async def import_group(ctx: Context, req: ImportGroup) -> dict[str, Any]:
    if rules.parse_group_type(req.Type) is GroupType.AVCHATROOM:
        raise errors.NoPermission("import_group does not apply to AVChatRoom groups")
    create_time = ctx.now_s if req.CreateTime is None else req.CreateTime
    if not 0 < create_time <= ctx.now_s:
        raise errors.InvalidParameter("CreateTime must be a past Unix time in seconds")
    return {"GroupId": await _new_group(ctx, req, create_time=create_time)}


# --- destroy_group ---------------------------------------------------------------------


class GroupRef(msgspec.Struct):
    GroupId: str


@command(SERVICE, "destroy_group", GroupRef)
async def destroy_group(ctx: Context, req: GroupRef) -> None:
    group = await load_group(ctx, req.GroupId)
    if not await ctx.store.destroy_group(ctx.sdkappid, group.group_id):
        raise errors.GroupNotFound(f"group {group.group_id!r} does not exist")
    await ctx.runtime.events.emit(GroupDestroyed(
        ctx.sdkappid, group.group_id, group.type.value, ctx.identifier, event_time_ms(ctx)
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


def _base_info(group: Group) -> dict[str, Any]:
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
    }
    if group.type is GroupType.AVCHATROOM:
        # AV groups have no roster: members are live sessions (get_online_member_num).
        del info["MemberNum"], info["MaxMemberNum"], info["InviteJoinOption"]
    return info


MEMBER_FIELDS = ("Role", "JoinTime", "MsgSeq", "MsgFlag", "LastSendMsgTime", "ShutUpUntil",
                 "NameCard", "UnreadMsgNum")
# UnreadMsgNum is an OpenTIM extension: listed only when a filter asks for it.
DEFAULT_MEMBER_FIELDS = MEMBER_FIELDS[:-1]


def member_row(member: Member, fields: tuple[str, ...] | list[str],
               data_keys: list[str] | None) -> dict[str, Any]:
    values = {
        "Role": member.role.value,
        "JoinTime": member.join_time,
        "MsgSeq": member.msg_seq,
        "MsgFlag": member.msg_flag,
        "LastSendMsgTime": member.last_send_msg_time,
        "ShutUpUntil": member.shut_up_until,
        "NameCard": member.name_card,
        "UnreadMsgNum": member.unread_msg_num,
    }
    row: dict[str, Any] = {"Member_Account": member.account}
    row.update((f, values[f]) for f in fields if f in values)
    data = member.app_member_defined_data
    if data_keys is not None:
        data = {k: v for k, v in data.items() if k in data_keys}
    row["AppMemberDefinedData"] = [{"Key": k, "Value": v} for k, v in data.items()]
    return row


@command(SERVICE, "get_group_info", GetGroupInfo)
async def get_group_info(ctx: Context, req: GetGroupInfo) -> dict[str, Any]:
    if not req.GroupIdList:
        raise errors.InvalidParameter("GroupIdList is empty")
    if len(req.GroupIdList) > GROUP_INFO_MAX:
        raise errors.TooManyAccounts(f"GroupIdList has more than {GROUP_INFO_MAX} groups")
    filt = req.ResponseFilter or ResponseFilter()
    valid = [g for g in req.GroupIdList if rules.is_well_formed_group_id(g)]
    found = await ctx.store.get_groups(ctx.sdkappid, valid)
    items = []
    for group_id in req.GroupIdList:
        group = found.get(group_id)
        if group is None:
            code = errors.GroupNotFound if group_id in valid else errors.InvalidGroupId
            items.append({"GroupId": group_id, "ErrorCode": code.code,
                          "ErrorInfo": code.default_info})
            continue
        items.append(await _group_info_item(ctx, group, filt))
    return {"GroupInfo": items}


async def _group_info_item(ctx: Context, group: Group, filt: ResponseFilter) -> dict[str, Any]:
    base = _base_info(group)
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
        members = await ctx.store.get_members(ctx.sdkappid, group.group_id, limit=None)
        item["MemberList"] = [
            member_row(m, fields, filt.AppDefinedDataFilter_GroupMember) for m in members
        ]
    return item


# --- get_group_member_info -------------------------------------------------------------


class GetGroupMemberInfo(msgspec.Struct):
    GroupId: str
    Limit: Int64 | None = None
    Offset: NonNegInt64 = 0
    Next: str = ""
    MemberInfoFilter: list[str] | None = None
    MemberRoleFilter: list[str] = []
    AppDefinedDataFilter_GroupMember: list[str] | None = None


def _encode_next(member: Member) -> str:
    return base64.urlsafe_b64encode(f"{member.join_time}:{member.account}".encode()).decode()


def _decode_next(token: str) -> tuple[int, str]:
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
            and len(account.encode()) <= ACCOUNT_MAX_BYTES):
        return int(join_time), account
    raise errors.InvalidParameter(
        f"Next {errors.shown(token)} is not a value this server returned")


@command(SERVICE, "get_group_member_info", GetGroupMemberInfo)
async def get_group_member_info(ctx: Context, req: GetGroupMemberInfo) -> dict[str, Any]:
    group = await load_group(ctx, req.GroupId)
    if group.type is GroupType.AVCHATROOM:
        raise errors.NoPermission(
            "get_group_member_info does not apply to AVChatRoom groups: use get_members"
        )
    if req.Limit is not None and not 0 <= req.Limit <= MEMBER_INFO_LIMIT_MAX:
        raise errors.InvalidParameter(f"Limit must be between 0 and {MEMBER_INFO_LIMIT_MAX}")
    for role in req.MemberRoleFilter:
        if role not in {r.value for r in Role}:
            raise errors.InvalidParameter(f"MemberRoleFilter has unknown role {errors.shown(role)}")
    limit = req.Limit or None  # 0 or absent: every member
    community = group.type is GroupType.COMMUNITY
    members = await ctx.store.get_members(
        ctx.sdkappid, group.group_id,
        limit=limit,
        offset=0 if community else req.Offset,
        after=_decode_next(req.Next) if community and req.Next else None,
        roles=req.MemberRoleFilter,
    )
    fields = req.MemberInfoFilter if req.MemberInfoFilter is not None else DEFAULT_MEMBER_FIELDS
    body: dict[str, Any] = {
        "MemberNum": group.member_num,
        "MemberList": [member_row(m, fields, req.AppDefinedDataFilter_GroupMember)
                       for m in members],
    }
    if community:
        full_page = limit is not None and len(members) == limit
        body["Next"] = _encode_next(members[-1]) if full_page and members else ""
    return body


# --- get_appid_group_list ---------------------------------------------------------------


class GetAppidGroupList(msgspec.Struct):
    Limit: Int64 = GROUP_LIST_LIMIT_MAX
    Next: NonNegInt64 = 0
    GroupType: str | None = None


@command(SERVICE, "get_appid_group_list", GetAppidGroupList)
async def get_appid_group_list(ctx: Context, req: GetAppidGroupList) -> dict[str, Any]:
    if not 0 < req.Limit <= GROUP_LIST_LIMIT_MAX:
        raise errors.InvalidParameter(f"Limit must be between 1 and {GROUP_LIST_LIMIT_MAX}")
    group_type = rules.parse_group_type(req.GroupType) if req.GroupType else None
    page = await ctx.store.list_groups(ctx.sdkappid, limit=req.Limit, offset=req.Next,
                                       group_type=group_type)
    return {
        "TotalCount": page.total,
        "GroupIdList": [{"GroupId": g} for g in page.group_ids],
        "Next": page.next,
    }


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
    if group.type is GroupType.AVCHATROOM:
        raise errors.NoPermission("members cannot be added to an AVChatRoom: they join")
    if not req.MemberList:
        raise errors.InvalidParameter("MemberList is empty")
    if len(req.MemberList) > ADD_MEMBER_MAX:
        raise errors.TooManyAccounts(f"MemberList has more than {ADD_MEMBER_MAX} members")
    new = NewMembers.joining(list(dict.fromkeys(m.Member_Account for m in req.MemberList)),
                             Role.MEMBER, ctx.now_s)
    results = await ctx.store.add_members(ctx.sdkappid, group.group_id, lambda _: new,
                                          full_error=True)
    added = tuple(a for a, r in results.items() if r == MemberResult.ADDED)
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
    if group.type is GroupType.AVCHATROOM:
        raise errors.InvalidParameter(
            "members cannot be removed from an AVChatRoom: mute them instead"
        )
    if not req.MemberToDel_Account:
        raise errors.InvalidParameter("MemberToDel_Account is empty")
    if len(req.MemberToDel_Account) > DELETE_MEMBER_MAX:
        raise errors.TooManyAccounts(
            f"MemberToDel_Account has more than {DELETE_MEMBER_MAX} accounts"
        )
    if group.owner and group.owner in req.MemberToDel_Account:
        raise errors.InvalidParameter(f"the group owner {group.owner!r} cannot be removed")
    removed = await ctx.store.delete_members(ctx.sdkappid, group.group_id,
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
    from opentim.online import require_online_list_group

    await require_online_list_group(ctx.runtime.group_types, ctx.sdkappid, req.GroupId,
                                    allowed=(GroupType.AVCHATROOM,))
    count = await ctx.runtime.presence.count(ctx.sdkappid, req.GroupId, now=ctx.now)
    return {"OnlineMemberNum": count}


# --- import_group_member ---------------------------------------------------------------

IMPORT_MEMBER_MAX = 300  # seed 002; older pages say 100 or 20 (protocol.md §9)


class ImportedMember(msgspec.Struct):
    Member_Account: str
    Role: str | None = None
    JoinTime: Int64 | None = None
    UnreadMsgNum: NonNegInt64 | None = None


class ImportGroupMember(msgspec.Struct):
    GroupId: str
    MemberList: list[ImportedMember]


def _importable(items: list[ImportedMember], create_time: int, now: int) -> NewMembers:
    """The first entry of each account whose JoinTime (if sent) is in (CreateTime, now]."""
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
        if join_time is not None and not create_time < join_time <= now:
            continue  # fails on its own JoinTime
        new.accounts.append(account)
        new.roles.append(item.Role or Role.MEMBER)
        new.join_times.append(now if join_time is None else join_time)
        new.unread.append(item.UnreadMsgNum or 0)
    return new


@command(SERVICE, "import_group_member", ImportGroupMember)
async def import_group_member(ctx: Context, req: ImportGroupMember) -> dict[str, Any]:
    rules.check_group_id(req.GroupId)
    if not req.MemberList:
        raise errors.InvalidParameter("MemberList is empty")
    if len(req.MemberList) > IMPORT_MEMBER_MAX:
        raise errors.TooManyAccounts(f"MemberList has more than {IMPORT_MEMBER_MAX} members")
    for item in req.MemberList:
        if item.Role is not None and item.Role != Role.ADMIN:
            raise errors.InvalidParameter(
                f"Role {item.Role!r} of {item.Member_Account!r}: only Admin can be imported "
                "(leave Role out for an ordinary member)"
            )
    now = ctx.now_s

    def prepare(group: Group) -> NewMembers:
        # Runs under the group's lock: its type and CreateTime come from the same
        # transaction as the insert, with no separate read of the group.
        if group.type is GroupType.AVCHATROOM:
            raise errors.NoPermission("import_group_member does not apply to AVChatRoom groups")
        return _importable(req.MemberList, group.create_time, now)

    results = await ctx.store.add_members(ctx.sdkappid, req.GroupId, prepare)
    return {"MemberList": _replies([item.Member_Account for item in req.MemberList], results)}


def _replies(accounts: list[str], results: dict[str, int]) -> list[dict[str, Any]]:
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


# --- messages: send_group_msg, import_group_msg, set_unread_msg_num -----------------------

MSG_BODY_MAX_BYTES = 12 * 1024
IMPORT_MSG_MAX = 7
# A TIMRelayElem (merged messages) nests about 6 levels per relay: 32 allows 5 relays deep.
MSG_CONTENT_MAX_DEPTH = 32
MSG_TYPES = frozenset({
    "TIMTextElem", "TIMLocationElem", "TIMFaceElem", "TIMCustomElem", "TIMSoundElem",
    "TIMImageElem", "TIMFileElem", "TIMVideoFileElem", "TIMRelayElem",
})
_encode = msgspec.json.Encoder().encode


class MsgElem(msgspec.Struct):
    MsgType: str
    MsgContent: dict[str, Any]


class SendGroupMsg(msgspec.Struct):
    GroupId: str
    Random: UInt32
    MsgBody: list[MsgElem]
    From_Account: str | None = None


def _message_body(elems: list[MsgElem]) -> tuple[list[dict[str, Any]], bool]:
    """The body as stored, and whether it fits in 12 KB; malformed elements fail, 10004."""
    if not elems:
        raise errors.InvalidParameter("MsgBody is empty")
    body = []
    for elem in elems:
        if elem.MsgType not in MSG_TYPES:
            raise errors.InvalidParameter(f"MsgType {errors.shown(elem.MsgType)} is not supported")
        if nesting_exceeds(elem.MsgContent, MSG_CONTENT_MAX_DEPTH):
            # Stored as JSON and encoded again on the way to the database: a bound here keeps
            # that encoding far from the interpreter's recursion limit.
            raise errors.InvalidParameter(
                f"MsgContent nests arrays and objects more than {MSG_CONTENT_MAX_DEPTH} deep")
        if elem.MsgType == "TIMTextElem" and not isinstance(elem.MsgContent.get("Text"), str):
            raise errors.InvalidParameter("a TIMTextElem needs MsgContent.Text, a string")
        body.append({"MsgType": elem.MsgType, "MsgContent": elem.MsgContent})
    return body, len(_encode(body)) <= MSG_BODY_MAX_BYTES


@command(SERVICE, "send_group_msg", SendGroupMsg)
async def send_group_msg(ctx: Context, req: SendGroupMsg) -> dict[str, Any]:
    body, fits = _message_body(req.MsgBody)
    if not fits:
        raise errors.MsgBodyTooLong(f"MsgBody exceeds {MSG_BODY_MAX_BYTES} bytes")
    group = await load_group(ctx, req.GroupId)
    # AVChatRoom: no roster and no history. The message still takes a seq (clients order
    # live messages by it), but no row is kept and the sender need not be a member.
    is_av = group.type is GroupType.AVCHATROOM
    if is_av and req.From_Account and not await ctx.store.existing_accounts(
            ctx.sdkappid, [req.From_Account]):
        raise errors.AccountNotFound(f"From_Account {req.From_Account!r} has not been imported")
    message = GroupMessage(req.From_Account or None, ctx.now_s, req.Random, body)
    seq = await ctx.store.append_message(ctx.sdkappid, group.group_id, message, keep=not is_av,
                                         sender_must_be_member=not is_av)
    if seq is None:
        raise errors.NoPermission(f"From_Account {req.From_Account!r} is not a member of "
                                  f"group {group.group_id!r}")
    return {"MsgTime": message.send_time, "MsgSeq": seq}


class ImportedMsg(msgspec.Struct):
    From_Account: str
    SendTime: Int64
    MsgBody: list[MsgElem]
    Random: UInt32 = 0


class ImportGroupMsg(msgspec.Struct):
    GroupId: str
    MsgList: list[ImportedMsg]
    RecentContactFlag: Int64 = 0  # no conversation lists here: accepted and ignored
    TopicId: str | None = None


@command(SERVICE, "import_group_msg", ImportGroupMsg)
async def import_group_msg(ctx: Context, req: ImportGroupMsg) -> dict[str, Any]:
    rules.check_group_id(req.GroupId)
    if not req.MsgList:
        raise errors.InvalidParameter("MsgList is empty")
    # 10004 rather than 10005: Tencent's 10005 is about too many accounts.
    if len(req.MsgList) > IMPORT_MSG_MAX:
        raise errors.InvalidParameter(f"MsgList has more than {IMPORT_MSG_MAX} messages")
    if req.TopicId:
        raise errors.InvalidParameter("topics are not supported: leave TopicId out")
    for m in req.MsgList:
        # Not checked against the accounts (history may name gone users), but it is stored.
        if len(m.From_Account.encode()) > ACCOUNT_MAX_BYTES:
            raise errors.InvalidParameter(
                f"From_Account {errors.shown(m.From_Account)} is longer than "
                f"{ACCOUNT_MAX_BYTES} bytes: no UserID is")
    bodies = [_message_body(m.MsgBody) for m in req.MsgList]
    group = await load_group(ctx, req.GroupId)
    if group.type is GroupType.AVCHATROOM:
        raise errors.NoPermission("import_group_msg does not apply to AVChatRoom groups")
    fitting = [GroupMessage(m.From_Account, m.SendTime, m.Random, body)
               for m, (body, fits) in zip(req.MsgList, bodies, strict=True) if fits]
    seqs = iter(await ctx.store.import_messages(ctx.sdkappid, group.group_id, fitting,
                                                now=ctx.now_s)
                if fitting else [])
    results = []
    for m, (_, fits) in zip(req.MsgList, bodies, strict=True):
        seq = next(seqs) if fits else None
        code = 0 if seq is not None else errors.InvalidParameter.code if fits \
            else errors.MsgBodyTooLong.code
        results.append({"MsgSeq": seq or 0, "MsgTime": m.SendTime, "Result": code})
    return {"ImportMsgResult": results}


class SetUnreadMsgNum(msgspec.Struct):
    GroupId: str
    Member_Account: str
    UnreadMsgNum: NonNegInt64


@command(SERVICE, "set_unread_msg_num", SetUnreadMsgNum)
async def set_unread_msg_num(ctx: Context, req: SetUnreadMsgNum) -> None:
    group = await load_group(ctx, req.GroupId)
    if group.type in (GroupType.AVCHATROOM, GroupType.CHATROOM):
        # Tencent: these clients keep no unread counts, and setting one is accepted and
        # ignored rather than failed.
        return
    if not await ctx.store.set_unread(ctx.sdkappid, group.group_id, req.Member_Account,
                                      req.UnreadMsgNum):
        raise errors.NoPermission(f"{req.Member_Account!r} is not a member of group "
                                  f"{group.group_id!r}")
