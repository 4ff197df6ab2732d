"""Messages: send_group_msg, import_group_msg, set_unread_msg_num.

The rules each command applies are in ``domain/messages.py``.
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec

from opentim import errors
from opentim.domain import messages as rules
from opentim.gateway.commands import Caller, gateway_command
from opentim.messaging.group import GroupSend
from opentim.protocol.dispatch import command
from opentim.protocol.fields import Int64, NonNegInt64, UInt32
from opentim.runtime import Context
from opentim.services.group_open_http_svc.common import SERVICE, load_group
from opentim.storage.base import GroupMessage


class MsgElem(msgspec.Struct):
    MsgType: str
    MsgContent: dict[str, Any]


class SendGroupMsg(msgspec.Struct):
    GroupId: str
    Random: UInt32
    MsgBody: list[MsgElem]
    From_Account: str | None = None
    MsgPriority: str | None = None
    OnlineOnlyFlag: UInt32 = 0
    To_Account: list[str] | None = None
    CloudCustomData: str = ""
    SendMsgControl: list[str] = []  # NoLastMsg, NoUnread: accepted (docs/messages.md)
    ForbidCallbackControl: list[str] = []
    TopicId: str | None = None
    # OfflinePushInfo, SupportMessageExtension, NeedReadReceipt: accepted and ignored.


@command(SERVICE, "send_group_msg", SendGroupMsg)
async def send_group_msg(ctx: Context, req: SendGroupMsg) -> dict[str, Any]:
    if req.TopicId:
        raise errors.InvalidParameter("topics are not supported: leave TopicId out")
    sent = await ctx.runtime.group_messages.send(ctx.app, GroupSend(
        group_id=req.GroupId, sender=req.From_Account or None, operator=ctx.identifier,
        body=rules.sendable_body(req.MsgBody), random=req.Random,
        priority=rules.priority_index(req.MsgPriority), online_only=bool(req.OnlineOnlyFlag),
        cloud_custom_data=req.CloudCustomData, to_accounts=req.To_Account,
        exempt=not req.From_Account, forbid_callbacks=frozenset(req.ForbidCallbackControl),
        origin=ctx.origin), now=ctx.now)
    return {"MsgTime": sent.msg_time, "MsgSeq": sent.msg_seq}


class GatewaySendGroupMsg(msgspec.Struct):
    """The gateway's send_group_msg: the sender is the connection's account."""

    GroupId: str
    MsgBody: list[MsgElem]
    Random: UInt32 | None = None
    MsgRandom: UInt32 | None = None  # the name pushed messages carry; either is accepted
    MsgPriority: str | None = None
    OnlineOnlyFlag: UInt32 = 0
    To_Account: list[str] | None = None
    CloudCustomData: str = ""


@gateway_command("send_group_msg", GatewaySendGroupMsg)
async def gateway_send_group_msg(caller: Caller, req: GatewaySendGroupMsg,
                                 now: float) -> dict[str, Any]:
    runtime, presence = caller.runtime, caller.presence
    app = runtime.apps.get(presence.sdkappid)
    if app is None:
        raise errors.SdkAppIdNotFound()
    body = rules.sendable_body(req.MsgBody)
    group = await runtime.group_messages.load(app.sdkappid, req.GroupId)
    is_admin = presence.account in app.admins
    if not rules.keeps_history(group) and req.GroupId not in presence.groups and not is_admin:
        # An AVChatRoom has no roster: its audience is who joined, and only they speak.
        raise errors.NoPermission(f"join group {req.GroupId!r} before sending to it")
    random = req.Random if req.Random is not None else req.MsgRandom
    if random is None:
        random = secrets.randbits(32)  # none given: never mistaken for a duplicate
    sent = await runtime.group_messages.send(app, GroupSend(
        group_id=group.group_id, sender=presence.account, operator=presence.account,
        body=body, random=random, priority=rules.priority_index(req.MsgPriority),
        online_only=bool(req.OnlineOnlyFlag), cloud_custom_data=req.CloudCustomData,
        to_accounts=req.To_Account, sender_must_be_member=rules.keeps_history(group),
        exempt=is_admin, origin=presence.origin, except_conn=presence.conn_id),
        now=now, group=group)
    return {"GroupId": group.group_id, "MsgSeq": sent.msg_seq, "MsgTime": sent.msg_time,
            "MsgRandom": random}


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
    bodies = rules.check_import(req.GroupId, req.MsgList, req.TopicId)
    group = await load_group(ctx, req.GroupId)
    rules.check_import_target(group)
    fitting = [GroupMessage(m.From_Account, m.SendTime, m.Random, body)
               for m, (body, fits) in zip(req.MsgList, bodies, strict=True) if fits]
    seqs = iter(await ctx.store.messages.import_history(ctx.sdkappid, group.group_id, fitting,
                                                now=ctx.now_s)
                if fitting else [])
    results = []
    for m, (_, fits) in zip(req.MsgList, bodies, strict=True):
        seq = next(seqs) if fits else None
        results.append({"MsgSeq": seq or 0, "MsgTime": m.SendTime,
                        "Result": rules.import_result(seq, fits)})
    return {"ImportMsgResult": results}


class SetUnreadMsgNum(msgspec.Struct):
    GroupId: str
    Member_Account: str
    UnreadMsgNum: NonNegInt64


@command(SERVICE, "set_unread_msg_num", SetUnreadMsgNum)
async def set_unread_msg_num(ctx: Context, req: SetUnreadMsgNum) -> None:
    group = await load_group(ctx, req.GroupId)
    if not rules.keeps_unread(group):
        return  # accepted and ignored, as Tencent does
    if not await ctx.store.members.set_unread(ctx.sdkappid, group.group_id, req.Member_Account,
                                      req.UnreadMsgNum):
        raise errors.NoPermission(f"{req.Member_Account!r} is not a member of group "
                                  f"{group.group_id!r}")
