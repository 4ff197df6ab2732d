"""One-to-one messages: sendmsg, batchsendmsg, importmsg, admin_getroammsg,
admin_msgwithdraw, admin_set_msg_read, get_c2c_unread_msg_num; and the gateway's
send_c2c_msg.

A handler checks the fields and the accounts (rules in ``domain/c2c.py``), then sends
through ``messaging/c2c.py`` or reads ``storage/c2c.py``. Required fields are optional in
the request shapes so that a missing one gets Tencent's code for that field (90003
To_Account, 90005 MsgRandom, 90008 From_Account, …) rather than the generic 90001.
"""

from __future__ import annotations

import random as _random
from collections.abc import Iterable
from typing import Any

import msgspec

from opentim import errors
from opentim.domain import c2c as rules
from opentim.domain.apps import App
from opentim.gateway.commands import Caller, gateway_command
from opentim.messaging.c2c import C2CMessaging, C2CSend
from opentim.protocol.dispatch import command
from opentim.protocol.fields import INT64_MAX, Int64, NonNegInt64, UInt32
from opentim.runtime import Context, Runtime
from opentim.services.openim import SERVICE
from opentim.storage.base import C2CMessage


class MsgElem(msgspec.Struct):
    MsgType: str
    MsgContent: dict[str, Any]


class OfflinePushInfo(msgspec.Struct):
    """Accepted and ignored (no offline push here); its integers still have a range."""

    PushFlag: Int64 = 0
    Title: str | None = None
    Desc: str | None = None
    Ext: str | None = None
    AndroidInfo: dict[str, Any] | None = None
    ApnsInfo: dict[str, Any] | None = None


class _Message(msgspec.Struct):
    """The fields sendmsg and batchsendmsg share."""

    MsgRandom: UInt32 | None = None
    MsgBody: list[MsgElem] | None = None
    From_Account: str | None = None
    SyncOtherMachine: Int64 | None = None
    MsgSeq: UInt32 | None = None
    MsgLifeTime: NonNegInt64 | None = None
    MsgTimeStamp: Int64 | None = None
    SendMsgControl: list[str] | None = None
    CloudCustomData: str | None = None
    # Accepted and ignored: no extensions, read receipts or offline push here.
    SupportMessageExtension: Int64 = 0
    IsNeedReadReceipt: Int64 = 0
    OfflinePushInfo: OfflinePushInfo | None = None


class SendMsg(_Message):
    To_Account: str | None = None
    ForbidCallbackControl: list[str] | None = None


class BatchSendMsg(_Message):
    To_Account: list[str] | str | None = None


async def _existing(runtime: Runtime, app: App, accounts: Iterable[str]) -> set[str]:
    """Which accounts exist: imported ones, and the app's admins (who may send and receive
    without being imported)."""
    wanted = set(accounts)
    shaped = [a for a in wanted if rules.is_user_id(a)]
    found = await runtime.store.accounts.existing(app.sdkappid, shaped) if shaped else set()
    return found | (wanted & app.admins)


async def _check_pair(runtime: Runtime, app: App, sender: str, to: str) -> None:
    known = await _existing(runtime, app, {sender, to})
    if sender not in known:
        raise errors.OpenimFromAccountInvalid(
            f"From_Account {errors.shown(sender)} has not been imported")
    if to not in known:
        raise errors.OpenimToAccountInvalid(
            f"To_Account {errors.shown(to)} has not been imported")


def _common(req: _Message, identifier: str, *,
            batch: bool) -> tuple[str, list[dict[str, Any]], str]:
    """Sender, body and CloudCustomData of a send, each checked with its code."""
    if req.MsgRandom is None:
        raise errors.OpenimMsgRandomInvalid()
    if req.MsgBody is None:
        raise errors.OpenimMsgBodyInvalid("MsgBody is missing")
    body = rules.c2c_body(req.MsgBody, batch=batch)
    custom = rules.check_cloud_custom_data(req.CloudCustomData, batch=batch)
    sender = rules.sender_account(req.From_Account, identifier)
    if not rules.is_user_id(sender):
        raise errors.OpenimFromAccountInvalid(
            f"From_Account {errors.shown(sender)} is not a UserID")
    return sender, body, custom


def _send(req: _Message, sender: str, body: list[dict[str, Any]], custom: str, *,
          forbid: list[str] | None) -> C2CSend:
    push_to_sender, sender_roam = rules.sync_other_machine(req.SyncOtherMachine)
    ask_before, tell_after = rules.callbacks_wanted(forbid)
    assert req.MsgRandom is not None
    return C2CSend(sender, body, req.MsgRandom, req.MsgSeq, req.MsgTimeStamp, custom,
                   keep=rules.keeps(req.MsgLifeTime),
                   counts_unread=rules.counts_unread(req.SendMsgControl),
                   push_to_sender=push_to_sender, sender_roam=sender_roam,
                   ask_before=ask_before, tell_after=tell_after)


@command(SERVICE, "sendmsg", SendMsg)
async def sendmsg(ctx: Context, req: SendMsg) -> dict[str, Any]:
    to = rules.require_account(req.To_Account, errors.OpenimToAccountInvalid, "To_Account")
    sender, body, custom = _common(req, ctx.identifier, batch=False)
    msg = _send(req, sender, body, custom, forbid=req.ForbidCallbackControl)
    await _check_pair(ctx.runtime, ctx.app, sender, to)
    sent = await C2CMessaging.of(ctx.runtime).send(ctx.app, msg, to, now=ctx.now)
    return {"MsgTime": sent.msg_time, "MsgKey": sent.msg_key}


@command(SERVICE, "batchsendmsg", BatchSendMsg)
async def batchsendmsg(ctx: Context, req: BatchSendMsg) -> dict[str, Any]:
    if req.To_Account is None:
        raise errors.OpenimToAccountInvalid("To_Account is missing")
    if isinstance(req.To_Account, str):
        raise errors.OpenimToAccountNotArray()
    to_accounts = rules.recipients(req.To_Account)
    sender, body, custom = _common(req, ctx.identifier, batch=True)
    # (batchsendmsg calls no callback, whatever ForbidCallbackControl says)
    msg = _send(req, sender, body, custom, forbid=["ForbidBeforeSendMsgCallback",
                                                   "ForbidAfterSendMsgCallback"])
    known = await _existing(ctx.runtime, ctx.app, [sender, *to_accounts])
    if sender not in known:
        raise errors.OpenimFromAccountInvalid(
            f"From_Account {errors.shown(sender)} has not been imported")
    found = [to for to in to_accounts if to in known]
    if not found:
        raise errors.OpenimRecipientsNotFound()
    sent = await C2CMessaging.of(ctx.runtime).send_batch(ctx.app, msg, found, now=ctx.now)
    reply: dict[str, Any] = {"MsgKey": sent.msg_key}
    missing = [to for to in to_accounts if to not in known]
    if missing:
        reply["ErrorList"] = [{"To_Account": to, "ErrorCode": errors.AccountNotExist.code}
                              for to in missing]
    return reply


class ImportMsg(msgspec.Struct):
    SyncFromOldSystem: Int64 | None = None
    From_Account: str | None = None
    To_Account: str | None = None
    MsgRandom: UInt32 | None = None
    MsgTimeStamp: Int64 | None = None
    MsgBody: list[MsgElem] | None = None
    MsgSeq: UInt32 | None = None
    CloudCustomData: str | None = None
    SupportMessageExtension: Int64 = 0


@command(SERVICE, "importmsg", ImportMsg)
async def importmsg(ctx: Context, req: ImportMsg) -> None:
    """History from another system: kept with its own time, no callback. SyncFromOldSystem
    2 counts as read and reaches nobody; 5 counts as unread and reaches the recipient's
    connections (Tencent)."""
    live = rules.import_mode(req.SyncFromOldSystem)
    sender = rules.require_account(req.From_Account, errors.OpenimFromAccountInvalid,
                                   "From_Account")
    to = rules.require_account(req.To_Account, errors.OpenimToAccountInvalid, "To_Account")
    if req.MsgRandom is None:
        raise errors.OpenimMsgRandomInvalid()
    if req.MsgTimeStamp is None or req.MsgTimeStamp < 0:
        raise errors.OpenimMsgTimeStampInvalid("MsgTimeStamp is missing or negative")
    if req.MsgBody is None:
        raise errors.OpenimMsgBodyInvalid("MsgBody is missing")
    body = rules.c2c_body(req.MsgBody)
    custom = rules.check_cloud_custom_data(req.CloudCustomData)
    await _check_pair(ctx.runtime, ctx.app, sender, to)
    seq = req.MsgSeq if req.MsgSeq is not None else 0
    message = C2CMessage(sender, req.MsgTimeStamp, seq, req.MsgRandom, body, custom,
                         counts_unread=live)
    fresh = await ctx.store.c2c.store(ctx.sdkappid, message, [to])
    if live and fresh:
        await C2CMessaging.of(ctx.runtime).deliver_imported(ctx.sdkappid, message, to)


class GetRoamMsg(msgspec.Struct):
    Operator_Account: str | None = None
    Peer_Account: str | None = None
    MaxCnt: Int64 = 0
    MinTime: Int64 = 0
    MaxTime: Int64 = INT64_MAX
    LastMsgKey: str | None = None


@command(SERVICE, "admin_getroammsg", GetRoamMsg,
         legacy_fields=(("From_Account", "Operator_Account"), ("To_Account", "Peer_Account")))
async def admin_getroammsg(ctx: Context, req: GetRoamMsg) -> dict[str, Any]:
    """A conversation's history from one party's side, newest page first; each page in
    time order. Continue with MaxTime = LastMsgTime and LastMsgKey while Complete is 0."""
    operator = rules.require_account(req.Operator_Account, errors.OpenimFromAccountInvalid,
                                     "Operator_Account")
    peer = rules.require_account(req.Peer_Account, errors.OpenimToAccountInvalid,
                                 "Peer_Account")
    page = rules.roam_page_size(req.MaxCnt)
    before = rules.parse_msg_key(req.LastMsgKey) if req.LastMsgKey else None
    if operator not in await _existing(ctx.runtime, ctx.app, [operator]):
        raise errors.OpenimFromAccountInvalid(
            f"Operator_Account {errors.shown(operator)} has not been imported")
    rows, exhausted = await ctx.store.c2c.roam(
        ctx.sdkappid, operator, peer, min_time=req.MinTime, max_time=req.MaxTime,
        before=before, limit=page + 1)
    newest = rows[:page]
    fits = rules.fill_page([rules.body_size(r.body, r.cloud_custom_data) for r in newest],
                           page)
    kept = newest[:fits]
    complete = exhausted and len(rows) <= page and fits == len(newest)
    reads = await ctx.store.c2c.read_times(ctx.sdkappid, [operator, peer], [operator, peer])
    msg_list = [{
        "From_Account": r.from_account, "To_Account": r.to_account, "MsgSeq": r.msg_seq,
        "MsgRandom": r.msg_random, "MsgTimeStamp": r.msg_time, "MsgFlagBits": r.flag_bits,
        "IsPeerRead": int(reads.get((r.to_account, r.from_account), -1) >= r.msg_time),
        "MsgKey": rules.msg_key(r.msg_seq, r.msg_random, r.msg_time),
        "MsgBody": r.body, "CloudCustomData": r.cloud_custom_data,
    } for r in reversed(kept)]
    last = kept[-1] if kept else None
    return {
        "Complete": int(complete or not kept),
        "MsgCnt": len(msg_list),
        "LastMsgTime": last.msg_time if last else 0,
        "LastMsgKey": rules.msg_key(last.msg_seq, last.msg_random, last.msg_time)
        if last else "",
        "MsgList": msg_list,
    }


class MsgWithdraw(msgspec.Struct):
    From_Account: str | None = None
    To_Account: str | None = None
    MsgKey: str | None = None


@command(SERVICE, "admin_msgwithdraw", MsgWithdraw)
async def admin_msgwithdraw(ctx: Context, req: MsgWithdraw) -> None:
    sender = rules.require_account(req.From_Account, errors.OpenimFromAccountInvalid,
                                   "From_Account")
    to = rules.require_account(req.To_Account, errors.OpenimToAccountInvalid, "To_Account")
    if not req.MsgKey:
        raise errors.OpenimMsgKeyInvalid("MsgKey is missing")
    rules.parse_msg_key(req.MsgKey)
    await _check_pair(ctx.runtime, ctx.app, sender, to)
    await C2CMessaging.of(ctx.runtime).withdraw(ctx.app, sender, to, req.MsgKey,
                                                now=ctx.now, origin=ctx.origin)


class SetMsgRead(msgspec.Struct):
    Report_Account: str | None = None
    Peer_Account: str | None = None
    MsgReadTime: Int64 | str | None = None


@command(SERVICE, "admin_set_msg_read", SetMsgRead)
async def admin_set_msg_read(ctx: Context, req: SetMsgRead) -> None:
    """Report_Account has read Peer_Account's messages up to MsgReadTime (default now).
    Report_Account is the messages' recipient (90003 like To_Account), Peer_Account their
    sender (90008 like From_Account)."""
    reader = rules.require_account(req.Report_Account, errors.OpenimToAccountInvalid,
                                   "Report_Account")
    peer = rules.require_account(req.Peer_Account, errors.OpenimFromAccountInvalid,
                                 "Peer_Account")
    read_time = rules.read_time(ctx.now_s, req.MsgReadTime)
    await _check_pair(ctx.runtime, ctx.app, peer, reader)
    await ctx.store.c2c.set_read(ctx.sdkappid, reader, peer, read_time)


class GetC2CUnreadMsgNum(msgspec.Struct):
    To_Account: str | None = None
    Peer_Account: list[str] | None = None


@command(SERVICE, "get_c2c_unread_msg_num", GetC2CUnreadMsgNum)
async def get_c2c_unread_msg_num(ctx: Context, req: GetC2CUnreadMsgNum) -> dict[str, Any]:
    account = rules.require_account(req.To_Account, errors.OpenimToAccountInvalid,
                                    "To_Account")
    peers = rules.unread_peers(req.Peer_Account)
    known = await _existing(ctx.runtime, ctx.app, [account, *(peers or ())])
    if account not in known:
        raise errors.OpenimToAccountInvalid(
            f"To_Account {errors.shown(account)} has not been imported")
    if peers is None:
        return {"AllC2CUnreadMsgNum": await ctx.store.c2c.unread_total(ctx.sdkappid, account)}
    found = [p for p in peers if p in known]
    counts = await ctx.store.c2c.unread_of(ctx.sdkappid, account, found)
    reply: dict[str, Any] = {"C2CUnreadMsgNumList": [
        {"Peer_Account": p, "C2CUnreadMsgNum": counts[p]} for p in found]}
    missing = [p for p in peers if p not in known]
    if missing:
        reply["ErrorList"] = [{"Peer_Account": p, "ErrorCode": errors.AccountNotExist.code}
                              for p in missing]
    return reply


# --- the gateway ------------------------------------------------------------------------


class SendC2CMsg(msgspec.Struct):
    """A client's one-to-one message; the sender is the connection's account."""

    To_Account: str | None = None
    MsgBody: list[MsgElem] | None = None
    MsgRandom: UInt32 | None = None  # absent: the server picks one
    MsgSeq: UInt32 | None = None
    CloudCustomData: str | None = None
    MsgLifeTime: NonNegInt64 | None = None
    SendMsgControl: list[str] | None = None
    SyncOtherMachine: Int64 = 1  # a client's other connections get what it sent


@gateway_command("send_c2c_msg", SendC2CMsg)
async def send_c2c_msg(caller: Caller, req: SendC2CMsg, now: float) -> dict[str, Any]:
    runtime, presence = caller.runtime, caller.presence
    app = runtime.apps.get(presence.sdkappid)
    if app is None:
        raise errors.SdkAppIdNotFound()
    to = rules.require_account(req.To_Account, errors.OpenimToAccountInvalid, "To_Account")
    if req.MsgBody is None:
        raise errors.OpenimMsgBodyInvalid("MsgBody is missing")
    body = rules.c2c_body(req.MsgBody)
    custom = rules.check_cloud_custom_data(req.CloudCustomData)
    push_to_sender, sender_roam = rules.sync_other_machine(req.SyncOtherMachine)
    random = req.MsgRandom if req.MsgRandom is not None else \
        _random.randint(0, rules.UINT32_MAX)
    await _check_pair(runtime, app, presence.account, to)
    msg = C2CSend(presence.account, body, random, req.MsgSeq, None, custom,
                  keep=rules.keeps(req.MsgLifeTime),
                  counts_unread=rules.counts_unread(req.SendMsgControl),
                  push_to_sender=push_to_sender, sender_roam=sender_roam,
                  origin=presence.origin, except_conn=presence.conn_id)
    sent = await C2CMessaging.of(runtime).send(app, msg, to, now=now)
    return {"MsgTime": sent.msg_time, "MsgKey": sent.msg_key, "MsgSeq": sent.msg_seq}
