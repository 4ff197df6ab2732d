"""What each web-SDK ``servcmd`` does in OpenTIM (docs/tencent-sdk.md#servcmds).

The SDK names its calls after Tencent's services (``group_open_http_svc.send_group_msg``,
``openim.sendmsg``, ``profile.portrait_set``) and sends bodies shaped like the REST
commands of those names; here the caller is always the logged-in account, never an App
admin speaking for someone. Messages go through the gateway's own commands
(``gateway/commands.py`` REGISTRY: ``send_group_msg``, ``send_c2c_msg``), so the rules,
callbacks and refusals are the ones REST and the gateway apply. Joins and quits go through
``runtime.online`` exactly as the gateway's do.

Calls for features OpenTIM does not keep (friends, blocklists, conversation lists on the
server, cloud configuration, the SDK's own telemetry) get empty successful answers, so
that the SDK's start-up completes; any other unknown servcmd is refused with 10003.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from opentim import errors
from opentim.domain import profiles as profile_rules
from opentim.domain.groups import Group, GroupType, Role
from opentim.domain.marks import check_mark
from opentim.domain.online import ONLINE_LIST_TYPES, page_request
from opentim.gateway.commands import REGISTRY
from opentim.presence import InvalidCursorError
from opentim.sdkbridge import frames
from opentim.sdkbridge.connection import SdkConnection

log = logging.getLogger(__name__)

Handler = Callable[[SdkConnection, frames.Head, dict[str, Any], float],
                   Awaitable[dict[str, Any]]]
SERVCMDS: dict[str, Handler] = {}
# Calls answered before login too (the SDK fetches its configuration and reports
# telemetry on its own schedule).
BEFORE_LOGIN = {frames.LOGIN, frames.LOGOUT, "heartbeat.alive", "im_open_status.wshello"}

# Answered with an empty success and nothing else (see the module's docstring), with the
# few fields the SDK needs to end its paging.
EMPTY_ANSWERS: dict[str, dict[str, Any]] = {
    "im_open_status.wshello": {},
    "heartbeat.alive": {},
    "openim.get_peer_read_time": {},
    "openim.get_c2c_peer_mute_notifications": {},
    "openim.msg_push_ack": {},
    "openim.msgreaded": {},
    "recentcontact.page_get": {"CompleteFlag": 1, "SessionItem": [], "TimeStamp": 0,
                               "StartIndex": 0, "TopTimeStamp": 0, "TopStartIndex": 0},
    "recentcontact.get_contact_group": {},
    "recentcontact.search_contact_group": {},
    "million_group_open_http_svc.get_joined_group_list": {"TotalCount": 0,
                                                          "GroupIdList": []},
    "sns.black_list_get": {"BlackListItem": [], "StartIndex": 0},
    "sns.friend_get": {"CompleteFlag": 1},
    "sns.group_get": {},
    "sns.pendency_get": {},
    "im_sdk_config_mgr.fetch_config": {},
}
TELEMETRY_SERVICE = "imopenstat."  # the SDK's own logs and statistics: dropped

# Groups a member hears without joining (get_joined_group_list answers these).
ROSTER_TYPES = ("Private", "Public", "ChatRoom")
GROUP_ID_LIST_MAX = 50
PROFILE_ACCOUNTS_MAX = 100
ROSTER_PAGE_MAX = 100


def servcmd(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        SERVCMDS[name] = handler
        return handler
    return register


def _parse(body: dict[str, Any], shape: type[Any]) -> Any:
    try:
        return msgspec.convert(body, shape, strict=False)
    except msgspec.ValidationError as exc:
        raise errors.InvalidParameter(f"invalid body: {exc}") from None


async def handle(conn: SdkConnection, raw: bytes) -> None:
    """Answer one frame (a reply with the same servcmd and seq, whatever happens)."""
    try:
        frame = frames.decode(raw)
    except errors.TimError as exc:
        log.debug("unreadable SDK frame: %s", exc.info)
        return  # no servcmd/seq to answer with
    head = frame.head
    if log.isEnabledFor(logging.DEBUG):
        log.debug("SDK call %s seq %s", errors.shown(head.servcmd, 80), head.seq)
    try:
        body = await dispatch(conn, head, frame.body)
    except errors.TimError as exc:
        conn.send(frames.reply(head, {}, code=exc.code, info=exc.info))
        return
    except Exception:
        log.exception("SDK call %s failed", errors.shown(head.servcmd, 80))
        conn.send(frames.reply(head, {}, code=errors.GroupInternalError.code,
                               info="internal server error, try again"))
        return
    conn.send(frames.reply(head, body))


async def dispatch(conn: SdkConnection, head: frames.Head,
                   body: dict[str, Any]) -> dict[str, Any]:
    name = head.servcmd
    now = conn.runtime.clock()
    if name == frames.LOGIN:
        return await conn.login(head, now)
    if name.startswith(TELEMETRY_SERVICE):
        return {}
    if not conn.logged_in and name not in BEFORE_LOGIN:
        raise errors.UserSigEmpty("not logged in: send im_open_status.wslogin first")
    empty = EMPTY_ANSWERS.get(name)
    if empty is not None:
        return dict(empty)
    handler = SERVCMDS.get(name)
    if handler is None:
        raise errors.InvalidCommand(
            f"servcmd {errors.shown(name, 80)} is not supported by OpenTIM's SDK bridge "
            "(docs/tencent-sdk.md)")
    return await handler(conn, head, body, now)


def _app(conn: SdkConnection) -> Any:
    app = conn.runtime.apps.get(conn.presence.sdkappid)
    if app is None:
        raise errors.SdkAppIdNotFound()
    return app


# --- session --------------------------------------------------------------------------------


@servcmd(frames.LOGOUT)
async def wslogout(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                   now: float) -> dict[str, Any]:
    await conn.logout()
    return {}


@servcmd("im_sdk_config_mgr.fetch_imsdk_purchase_bitsv2")
async def purchase_bits(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                        now: float) -> dict[str, Any]:
    app = _app(conn)
    return {"int32_error_code": 0, "str_error_message": "",
            "str_purchase_bits": frames.purchase_bits(
                online_member_list=app.has_online_member_list),
            "uint32_expired_time": 3600}


# --- profiles -------------------------------------------------------------------------------


class _UserItem(msgspec.Struct):
    To_Account: str


class _PortraitGetAll(msgspec.Struct):
    UserItem: list[_UserItem] = []


@servcmd("profile.portrait_get_all")
async def portrait_get_all(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                           now: float) -> dict[str, Any]:
    """Every stored tag of up to 100 accounts (the SDK's getMyProfile / getUserProfile);
    accounts that were never imported are left out."""
    req = _parse(body, _PortraitGetAll)
    accounts = list(dict.fromkeys(u.To_Account for u in req.UserItem))
    if len(accounts) > PROFILE_ACCOUNTS_MAX:
        raise errors.ProfileInvalidParams(
            f"UserItem holds {len(accounts)} accounts: at most {PROFILE_ACCOUNTS_MAX}")
    found = await conn.runtime.store.accounts.portraits(conn.sdkappid, accounts) \
        if accounts else {}
    items = []
    for account in accounts:
        portrait = found.get(account)
        if portrait is None:
            continue
        tags: list[dict[str, Any]] = [
            {"Tag": profile_rules.NICK, "Value": portrait.nick},
            {"Tag": profile_rules.IMAGE, "Value": portrait.face_url},
        ]
        tags += [{"Tag": tag, "Value": value} for tag, value in portrait.tags.items()]
        items.append({"To_Account": account, "ProfileItem": tags,
                      "StandardSequence": 0, "CustomSequence": 0})
    return {"UserProfileItem": items}


class _ProfileItem(msgspec.Struct):
    Tag: str
    Value: Any


class _PortraitSet(msgspec.Struct):
    ProfileItem: list[_ProfileItem] = []


@servcmd("profile.portrait_set")
async def portrait_set(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                       now: float) -> dict[str, Any]:
    """updateMyProfile: the caller's own profile, with portrait_set's rules (40009 for an
    undeclared tag, 40610 for a value of the wrong type, …)."""
    req = _parse(body, _PortraitSet)
    values = profile_rules.check_set([(i.Tag, i.Value) for i in req.ProfileItem], _app(conn))
    nick, face_url, others = profile_rules.split_columns(values)
    if not await conn.runtime.store.accounts.set_portrait(
            conn.sdkappid, conn.account, nick=nick, face_url=face_url, tags=others):
        raise errors.ProfileAccountNotFound(account=conn.account)
    return {}


# --- groups ---------------------------------------------------------------------------------


async def _group(conn: SdkConnection, group_id: str) -> Group:
    return await conn.runtime.group_messages.load(conn.sdkappid, group_id)


class _GroupId(msgspec.Struct):
    GroupId: str


@servcmd("group_open_http_svc.apply_join_group")
async def apply_join_group(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                           now: float) -> dict[str, Any]:
    """joinGroup. An AVChatRoom (and a Community's online list) is joined as the gateway's
    join_group does: the account is online in it at once (get_members), the member-state
    webhook fires and the room's messages are pushed to this connection. Roster groups
    are joined through REST (add_group_member): a member is told it is in already."""
    req = _parse(body, _GroupId)
    group = await _group(conn, req.GroupId)
    presence = conn.presence
    if group.type in ONLINE_LIST_TYPES:
        await conn.join(group.group_id, now)
    elif not await conn.runtime.store.members.roles(presence.sdkappid, group.group_id,
                                                    [presence.account]):
        raise errors.NoPermission(
            f"group {group.group_id!r} is a {group.type.value} group: its members are "
            "added by the app's server (REST add_group_member), not by joinGroup")
    is_av = group.type is GroupType.AVCHATROOM
    return {"JoinedStatus": "JoinedSuccess", "GroupId": group.group_id,
            "AVChatRoomFlag": int(is_av), "AVChatRoomKey": group.group_id if is_av else ""}


@servcmd("group_open_http_svc.quit_group")
async def quit_group(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                     now: float) -> dict[str, Any]:
    """quitGroup of an AVChatRoom / Community online list (the gateway's quit_group; one
    the connection is not in is left already). Leaving a roster group is the app
    server's (REST delete_group_member)."""
    req = _parse(body, _GroupId)
    presence = conn.presence
    if req.GroupId not in presence.groups:
        group = await _group(conn, req.GroupId)
        if group.type not in ONLINE_LIST_TYPES:
            raise errors.NoPermission(
                f"group {group.group_id!r} is a {group.type.value} group: members leave "
                "it through the app's server (REST delete_group_member)")
        # Not in it (never joined, or taken out by a ban): nothing to leave. Answered as
        # done, so that the SDK forgets the room too.
        return {"GroupId": group.group_id}
    await conn.runtime.online.quit(presence, req.GroupId, now=now)
    conn.rooms.leave(presence.sdkappid, req.GroupId, conn)
    return {"GroupId": req.GroupId}


class _GroupIdList(msgspec.Struct):
    GroupIdList: list[str] = []


def _base_info(group: Group) -> dict[str, Any]:
    from opentim.services.group_open_http_svc.groups import base_info

    return base_info(group)


async def _groups_info(conn: SdkConnection, group_ids: list[str], *,
                       self_info: bool) -> dict[str, Any]:
    if len(group_ids) > GROUP_ID_LIST_MAX:
        raise errors.InvalidParameter(
            f"GroupIdList holds {len(group_ids)} groups: at most {GROUP_ID_LIST_MAX}")
    presence = conn.presence
    store = conn.runtime.store
    found = await store.groups.get(presence.sdkappid, group_ids) if group_ids else {}
    items: list[dict[str, Any]] = []
    for group_id in group_ids:
        group = found.get(group_id)
        if group is None:
            items.append({"GroupId": group_id, "ErrorCode": errors.GroupNotFound.code,
                          "ErrorInfo": errors.GroupNotFound(group_id=group_id).info})
            continue
        item = {"ErrorCode": 0, "ErrorInfo": "", **_base_info(group)}
        if group.type is GroupType.AVCHATROOM:
            item["MemberNum"] = await conn.runtime.presence.count(
                presence.sdkappid, group_id, now=conn.runtime.clock())
        if self_info:
            role = None
            if group.type is GroupType.AVCHATROOM:
                if group_id in presence.groups or group.owner == presence.account:
                    role = Role.OWNER.value if group.owner == presence.account \
                        else Role.MEMBER.value
            else:
                role = (await store.members.roles(presence.sdkappid, group_id,
                                                  [presence.account])).get(presence.account)
            if role is not None:
                item["SelfInfo"] = {"Role": role, "MsgFlag": "AcceptAndNotify"}
        items.append(item)
    return {"GroupInfo": items}


@servcmd("group_open_http_svc.get_group_self_member_info")
async def get_group_self_member_info(conn: SdkConnection, head: frames.Head,
                                     body: dict[str, Any], now: float) -> dict[str, Any]:
    """getGroupProfile: the groups' profiles (get_group_info's fields) and the caller's
    place in each."""
    return await _groups_info(conn, _parse(body, _GroupIdList).GroupIdList, self_info=True)


@servcmd("group_open_http_svc.get_group_info")
async def get_group_info(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                         now: float) -> dict[str, Any]:
    return await _groups_info(conn, _parse(body, _GroupIdList).GroupIdList, self_info=False)


@servcmd("group_open_http_svc.get_group_public_info")
async def get_group_public_info(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                                now: float) -> dict[str, Any]:
    """searchGroupByID."""
    return await _groups_info(conn, _parse(body, _GroupIdList).GroupIdList, self_info=False)


class _Paging(msgspec.Struct):
    Limit: int = 200
    Offset: int = 0


@servcmd("group_open_http_svc.get_joined_group_list")
async def get_joined_group_list(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                                now: float) -> dict[str, Any]:
    """getGroupList: the roster groups the caller is a member of (AVChatRooms have no
    roster; the SDK keeps those it joined itself)."""
    req = _parse(body, _Paging)
    limit = max(1, min(req.Limit, 1000))
    total, rows = await conn.runtime.store.members.joined(
        conn.sdkappid, conn.account, types=list(ROSTER_TYPES), with_inactive=True,
        limit=limit, offset=max(0, req.Offset))
    return {"TotalCount": total, "GroupIdList": [
        {**_base_info(group), "SelfInfo": {"Role": member.role.value,
                                           "JoinTime": member.join_time,
                                           "MsgFlag": member.msg_flag,
                                           "MsgSeq": member.msg_seq}}
        for group, member in rows]}


class _MemberInfo(msgspec.Struct):
    GroupId: str
    Limit: int = ROSTER_PAGE_MAX
    Offset: int = 0


@servcmd("group_open_http_svc.get_group_member_info")
async def get_group_member_info(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                                now: float) -> dict[str, Any]:
    """getGroupMemberList. An AVChatRoom: its online list (as get_members, first page),
    for a connection that joined it. A roster group: its members, for a member."""
    req = _parse(body, _MemberInfo)
    group = await _group(conn, req.GroupId)
    presence = conn.presence
    if group.type is GroupType.AVCHATROOM:
        rows = await _online_rows(conn, group, cursor=0)
        members = [{"Member_Account": r["Member_Account"],
                    "Role": Role.OWNER.value if r["Member_Account"] == group.owner
                    else Role.MEMBER.value,
                    "JoinTime": r["JoinTime"], "NameCard": ""}
                   for r in rows[0]]
        return {"MemberNum": len(members), "MemberList": members}
    if not await conn.runtime.store.members.roles(presence.sdkappid, group.group_id,
                                                  [presence.account]):
        raise errors.NoPermission(f"{presence.account!r} is not a member of group "
                                  f"{group.group_id!r}")
    limit = max(1, min(req.Limit, ROSTER_PAGE_MAX))
    page = await conn.runtime.store.members.get(presence.sdkappid, group.group_id,
                                                limit=limit, offset=max(0, req.Offset))
    return {"MemberNum": group.member_num, "MemberList": [
        {"Member_Account": m.account, "Role": m.role.value, "JoinTime": m.join_time,
         "NameCard": m.name_card, "ShutUpUntil": m.shut_up_until} for m in page]}


async def _online_rows(conn: SdkConnection, group: Group, *, cursor: int,
                       mark: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """A page of the AVChatRoom's online list (get_members' rows) and the next cursor,
    for a connection in the room (or the owner, or an App admin)."""
    presence = conn.presence
    app = _app(conn)
    if group.group_id not in presence.groups and presence.account != group.owner and \
            presence.account not in app.admins:
        raise errors.NoPermission(f"join group {group.group_id!r} before listing it")
    first, limit, cap = page_request(app.has_online_member_list, cursor)
    try:
        page = await conn.runtime.presence.page(
            presence.sdkappid, group.group_id, cursor=first, limit=limit, cap=cap,
            mark=None if mark is None else check_mark(mark), now=conn.runtime.clock())
    except InvalidCursorError:
        raise errors.InvalidParameter(f"{cursor} is not a cursor this server returned") \
            from None
    return msgspec.json.decode(page.rows), page.next_cursor


class _GetMembers(msgspec.Struct):
    GroupId: str
    Timestamp: int = 0  # the SDK's offset
    Mark: int | None = None  # the SDK's filter


@servcmd("group_open_avchatroom_http_svc.get_members")
async def get_members(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                      now: float) -> dict[str, Any]:
    """getGroupMemberList of an AVChatRoom when the app has the online member list
    (Premium): get_members' rows and NextTimestamp."""
    req = _parse(body, _GetMembers)
    group = await _group(conn, req.GroupId)
    if group.type is not GroupType.AVCHATROOM:
        raise errors.InvalidParameter(f"group {group.group_id!r} is not an AVChatRoom")
    rows, cursor = await _online_rows(conn, group, cursor=max(0, req.Timestamp),
                                      mark=req.Mark or None)
    return {"MemberList": rows, "NextTimestamp": cursor}


@servcmd("group_open_http_svc.get_online_member_num")
@servcmd("group_open_avchatroom_http_svc.get_online_member_num")
async def get_online_member_num(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                                now: float) -> dict[str, Any]:
    req = _parse(body, _GroupId)
    group = await _group(conn, req.GroupId)
    if group.type is not GroupType.AVCHATROOM:
        raise errors.InvalidParameter(f"group {group.group_id!r} is not an AVChatRoom")
    count = await conn.runtime.presence.count(conn.sdkappid, group.group_id, now=now)
    return {"OnlineMemberNum": count}


class _MarkItem(msgspec.Struct):
    Member_Account: str
    Marks: list[int]


class _ModifyUserInfo(msgspec.Struct):
    GroupId: str
    CommandType: int
    MemberList: list[_MarkItem]


@servcmd("group_open_avchatroom_http_svc.modify_user_info")
async def modify_user_info(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                           now: float) -> dict[str, Any]:
    """markGroupMemberList: the gateway's modify_marks (a connected owner or App admin
    sets or deletes marks >= 1000)."""
    req = _parse(body, _ModifyUserInfo)
    presence = conn.presence
    result = await conn.runtime.marks.modify_marks(
        _app(conn), req.GroupId, req.CommandType,
        [(m.Member_Account, m.Marks) for m in req.MemberList],
        operator=presence.account, now=now, origin=presence.origin, by_member=True)
    return {"GroupId": req.GroupId, "CommandType": req.CommandType,
            "MemberList": [{"Member_Account": m.account, "Marks": list(m.marks)}
                           for m in result.members]}


# --- messages -------------------------------------------------------------------------------


async def _gateway_command(conn: SdkConnection, name: str, doc: dict[str, Any],
                           now: float) -> dict[str, Any]:
    command = REGISTRY.get(name)
    if command is None:  # the messaging services are not loaded: a server bug
        raise errors.GroupInternalError(f"gateway command {name} is not registered")
    return await command.handler(conn, command.parse(doc), now)


_GROUP_FIELDS = ("GroupId", "MsgBody", "Random", "MsgPriority", "OnlineOnlyFlag",
                 "To_Account", "CloudCustomData")


@servcmd("group_open_http_svc.send_group_msg")
async def send_group_msg(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                         now: float) -> dict[str, Any]:
    """sendMessage to a group: the gateway's send_group_msg (joined AVChatRoom or roster
    membership, mutes, bans, duplicates, rate, Group.CallbackBeforeSendMsg, …). The
    sending connection gets no push of its own message."""
    doc = {k: body[k] for k in _GROUP_FIELDS if k in body and body[k] is not None}
    if not doc.get("To_Account"):
        doc.pop("To_Account", None)
    sent = await _gateway_command(conn, "send_group_msg", doc, now)
    return {"MsgSeq": sent["MsgSeq"], "MsgTime": sent["MsgTime"]}


_C2C_FIELDS = ("To_Account", "MsgBody", "MsgRandom", "MsgSeq", "CloudCustomData",
               "MsgLifeTime", "SendMsgControl")


@servcmd("openim.sendmsg")
async def sendmsg(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                  now: float) -> dict[str, Any]:
    """sendMessage to a user: the gateway's send_c2c_msg (C2C.CallbackBeforeSendMsg,
    duplicates, storage, delivery to the peer's connections and the sender's others)."""
    doc = {k: body[k] for k in _C2C_FIELDS if k in body and body[k] is not None}
    sent = await _gateway_command(conn, "send_c2c_msg", doc, now)
    return {"MsgTime": sent["MsgTime"], "MsgKey": sent["MsgKey"]}


@servcmd("openim.getmsg")
async def getmsg(conn: SdkConnection, head: frames.Head, body: dict[str, Any],
                 now: float) -> dict[str, Any]:
    """The SDK's sync of messages received while it was offline: none are kept for it
    (docs/tencent-sdk.md#what-does-not-work); SyncFlag 2 ends the sync."""
    return {"Cookie": "opentim", "SyncFlag": 2, "MsgList": []}
