"""Group history and what is said beside it: send_group_system_notification,
group_msg_recall, group_msg_get_simple, delete_group_msg_by_sender.

The rules are in ``domain/moderation.py``. Pushes go to the group's online audience
(``messaging.push_to_group``): an AVChatRoom's room, other groups' members. AVChatRoom
keeps no history: group_msg_get_simple answers 10007 there, delete_group_msg_by_sender
does nothing (as Tencent: no error), and group_msg_recall only tells the room.
"""

from __future__ import annotations

from typing import Any

import msgspec

from opentim import errors, messaging
from opentim.domain import moderation as rules
from opentim.domain.groups import GroupType
from opentim.events import GroupMessagesRecalled
from opentim.protocol.dispatch import command
from opentim.protocol.fields import Int64, NonNegInt64
from opentim.runtime import Context
from opentim.services.group_open_http_svc.common import SERVICE, event_time_ms, load_group
from opentim.storage.base import StoredGroupMessage

# --- send_group_system_notification ------------------------------------------------------


class SendGroupSystemNotification(msgspec.Struct):
    GroupId: str
    Content: str
    ToMembers_Account: list[str] | None = None
    TopicId: str | None = None


@command(SERVICE, "send_group_system_notification", SendGroupSystemNotification)
async def send_group_system_notification(ctx: Context,
                                         req: SendGroupSystemNotification) -> None:
    """Online only, kept nowhere, no callbacks (Tencent)."""
    rules.check_notification(req.Content, req.TopicId)
    group = await load_group(ctx, req.GroupId)
    targets = rules.notification_targets(group, req.ToMembers_Account)
    if targets is not None:  # only members hear it
        roles = await ctx.store.members.roles(ctx.sdkappid, group.group_id, targets)
        targets = [a for a in targets if a in roles]
        if not targets:
            return
    frame = {"event": "group_system_notification", "GroupId": group.group_id,
             "Content": req.Content, "MsgTime": ctx.now_s}
    await messaging.push_to_group(ctx.runtime.events, group, frame,
                                  to_accounts=targets)


# --- group_msg_recall --------------------------------------------------------------------


class MsgSeqItem(msgspec.Struct):
    MsgSeq: NonNegInt64


class GroupMsgRecall(msgspec.Struct):
    GroupId: str
    MsgSeqList: list[MsgSeqItem]
    Reason: str = ""
    TopicId: str | None = None


@command(SERVICE, "group_msg_recall", GroupMsgRecall)
async def group_msg_recall(ctx: Context, req: GroupMsgRecall) -> dict[str, Any]:
    seqs = rules.check_recall([item.MsgSeq for item in req.MsgSeqList])
    rules.check_no_topic(req.TopicId)
    group = await load_group(ctx, req.GroupId)
    if group.type is GroupType.AVCHATROOM:
        # No history: a seq the room has handed out is recalled from its online members.
        recalled = {s for s in seqs if s < group.next_msg_seq}
    else:
        recalled = await ctx.store.moderation.mark_removed(ctx.sdkappid, group.group_id,
                                                           seqs, rules.RECALLED)
    done = [s for s in seqs if s in recalled]
    if done:
        frame = {"event": "group_message_recalled", "GroupId": group.group_id,
                 "MsgSeqList": [{"MsgSeq": s} for s in done], "Reason": req.Reason,
                 "Operator_Account": ctx.identifier, "EventTime": event_time_ms(ctx)}
        await messaging.push_to_group(ctx.runtime.events, group, frame)
        await ctx.runtime.events.emit(GroupMessagesRecalled(
            ctx.sdkappid, group.group_id, group.type.value, ctx.identifier, tuple(done),
            event_time_ms(ctx), ctx.origin))
    return {"RecallRetList": [{"MsgSeq": s, "RetCode": 0 if s in recalled
                               else rules.RECALL_NOT_FOUND} for s in seqs]}


# --- group_msg_get_simple ----------------------------------------------------------------


class GroupMsgGetSimple(msgspec.Struct):
    GroupId: str
    ReqMsgNumber: Int64
    ReqMsgSeq: NonNegInt64 | None = None
    WithRecalledMsg: Int64 = 0
    TopicId: str | None = None


def _history_item(m: StoredGroupMessage) -> dict[str, Any]:
    item: dict[str, Any] = {
        "From_Account": m.from_account or "",
        "IsPlaceMsg": m.removed,
        "MsgBody": m.body if m.removed == rules.KEPT else [],
        "MsgPriority": rules.priority_number(m.priority),
        "MsgRandom": m.random,
        "MsgSeq": m.msg_seq,
        "MsgTimeStamp": m.send_time,
    }
    if m.cloud_custom_data and m.removed == rules.KEPT:
        item["CloudCustomData"] = m.cloud_custom_data
    return item


def _hole(seq: int) -> dict[str, Any]:
    """A seq with nothing stored (expired): IsPlaceMsg 1, as Tencent shows it."""
    return {"From_Account": "", "IsPlaceMsg": rules.DELETED, "MsgBody": [],
            "MsgPriority": rules.priority_number("Normal"), "MsgRandom": 0, "MsgSeq": seq,
            "MsgTimeStamp": 0}


@command(SERVICE, "group_msg_get_simple", GroupMsgGetSimple)
async def group_msg_get_simple(ctx: Context, req: GroupMsgGetSimple) -> dict[str, Any]:
    rules.check_no_topic(req.TopicId)
    group = await load_group(ctx, req.GroupId)
    rules.check_history_target(group)
    lo, hi, finished = rules.history_range(req.ReqMsgNumber, req.ReqMsgSeq,
                                           group.next_msg_seq)
    rows = await ctx.store.moderation.history(ctx.sdkappid, group.group_id, lo=lo, hi=hi) \
        if hi >= lo else []
    by_seq = {m.msg_seq: m for m in rows}
    listed = []
    for seq in range(hi, lo - 1, -1):
        found = by_seq.get(seq)
        if found is None:
            listed.append(_hole(seq))
        elif found.removed != rules.RECALLED or req.WithRecalledMsg == 1:
            listed.append(_history_item(found))
    return {"GroupId": group.group_id, "IsFinished": finished, "RspMsgList": listed}


# --- delete_group_msg_by_sender ----------------------------------------------------------


class DeleteGroupMsgBySender(msgspec.Struct):
    GroupId: str
    Sender_Account: str
    TopicId: str | None = None


@command(SERVICE, "delete_group_msg_by_sender", DeleteGroupMsgBySender)
async def delete_group_msg_by_sender(ctx: Context, req: DeleteGroupMsgBySender) -> None:
    """Tencent: recalls, silently (no client is told), the sender's messages among the
    group's newest 1000; history then no longer shows them. AVChatRoom: nothing kept,
    nothing to do, no error."""
    rules.check_no_topic(req.TopicId)
    if not req.Sender_Account:
        raise errors.InvalidParameter("Sender_Account is empty")
    group = await load_group(ctx, req.GroupId)
    if group.type is GroupType.AVCHATROOM:
        return
    await ctx.store.moderation.remove_by_sender(
        ctx.sdkappid, group.group_id, req.Sender_Account,
        from_seq=group.next_msg_seq - rules.DELETE_BY_SENDER_WINDOW, how=rules.RECALLED)
