"""Messages: send_group_msg, import_group_msg, set_unread_msg_num.

The rules each command applies are in ``domain/messages.py``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from opentim import errors
from opentim.domain import messages as rules
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


@command(SERVICE, "send_group_msg", SendGroupMsg)
async def send_group_msg(ctx: Context, req: SendGroupMsg) -> dict[str, Any]:
    body = rules.sendable_body(req.MsgBody)
    group = await load_group(ctx, req.GroupId)
    keep = rules.keeps_history(group)
    # Where no roster is kept the sender is checked against the accounts instead.
    if not keep and req.From_Account and not await ctx.store.accounts.existing(
            ctx.sdkappid, [req.From_Account]):
        raise errors.AccountNotFound(accounts=[req.From_Account])
    message = GroupMessage(req.From_Account or None, ctx.now_s, req.Random, body)
    seq = await ctx.store.messages.append(ctx.sdkappid, group.group_id, message, keep=keep,
                                         sender_must_be_member=keep)
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
