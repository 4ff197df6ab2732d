"""Sending one-to-one messages: one path for REST sendmsg / batchsendmsg and the gateway's
send_c2c_msg, plus importmsg and admin_msgwithdraw's side effects.

A single send (sendmsg, send_c2c_msg), in order, each step able to refuse before anything
is kept or delivered (the handler has checked the body and that both accounts exist):
1. its MsgSeq (the request's, or random), MsgTime and so its MsgKey;
2. C2C.CallbackBeforeSendMsg: may refuse (20006, or a code of the app's 120001-130000),
   drop silently (the sender is told it was sent) or replace MsgBody / CloudCustomData;
3. duplicates: the same sender, peer, MsgSeq, MsgRandom and body within 120 s is answered
   with the first send's MsgTime / MsgKey and neither kept nor delivered again;
4. keeping it (not when MsgLifeTime is 0), then delivery to every open connection of the
   recipient (and with SyncOtherMachine 1 of the sender, except the sending connection),
   then C2C.CallbackAfterSendMsg.

batchsendmsg does the same for up to 500 recipients with one MsgKey, and no callbacks
(Tencent calls none for it).
"""

from __future__ import annotations

import random as _random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentim import errors
from opentim.domain import c2c as rules
from opentim.domain.apps import App
from opentim.domain.messages import before_send_verdict
from opentim.events import REST, C2CMessageSent, C2CMessageWithdrawn, EventBus, Origin
from opentim.messaging import push_to_users
from opentim.messaging.guards import SendGuards
from opentim.storage.base import C2CMessage, WithdrawOutcome
from opentim.storage.sql import SqlStore
from opentim.webhooks.delivery import WebhookDispatcher
from opentim.webhooks.payloads import C2C_AFTER_MSG_WITHDRAW, C2C_AFTER_SEND_MSG
from opentim.webhooks.payloads import C2C_BEFORE_SEND_MSG as BEFORE_SEND

MESSAGE_EVENT = "c2c_message"
WITHDRAWN_EVENT = "c2c_message_withdrawn"


@dataclass(frozen=True, slots=True)
class C2CSend:
    """One message as decoded from REST or a gateway frame (checked by the handler)."""

    sender: str
    body: list[dict[str, Any]]
    msg_random: int
    msg_seq: int | None = None  # None: the server picks one
    msg_time: int | None = None  # MsgTimeStamp; None: now
    cloud_custom_data: str = ""
    keep: bool = True  # MsgLifeTime != 0
    counts_unread: bool = True  # no SendMsgControl NoUnread
    push_to_sender: bool = False  # SyncOtherMachine 1
    sender_roam: bool = True  # SyncOtherMachine != 2
    ask_before: bool = True  # no ForbidBeforeSendMsgCallback
    tell_after: bool = True  # no ForbidAfterSendMsgCallback
    origin: Origin = REST
    except_conn: str = ""  # the sending connection: it has the message in its reply


@dataclass(frozen=True, slots=True)
class Sent:
    msg_time: int
    msg_seq: int
    msg_key: str
    duplicate: bool = False


def frame(sender: str, to: str, seq: int, random: int, time: int, key: str,
          body: list[dict[str, Any]], cloud_custom_data: str) -> dict[str, Any]:
    """The pushed ``c2c_message`` frame, Tencent's field names."""
    return {"event": MESSAGE_EVENT, "From_Account": sender, "To_Account": to,
            "MsgSeq": seq, "MsgRandom": random, "MsgTime": time, "MsgKey": key,
            "MsgBody": body, "CloudCustomData": cloud_custom_data}


class C2CMessaging:
    def __init__(self, store: SqlStore, events: EventBus, guards: SendGuards,
                 webhooks: WebhookDispatcher) -> None:
        self.store = store
        self.events = events
        self.guards = guards
        self.webhooks = webhooks

    @classmethod
    def of(cls, runtime: Any) -> C2CMessaging:
        """The service on a runtime's stores, bus, guards and webhooks."""
        return cls(runtime.store, runtime.events, runtime.guards, runtime.webhooks)

    async def send(self, app: App, msg: C2CSend, to: str, *, now: float) -> Sent:
        sdkappid = app.sdkappid
        now_s = int(now)
        time = rules.msg_time(now_s, msg.msg_time)
        seq = msg.msg_seq if msg.msg_seq is not None else \
            rules.pick_seq(now, _random.getrandbits(22))
        key = rules.msg_key(seq, msg.msg_random, time)
        body, custom = msg.body, msg.cloud_custom_data

        if msg.ask_before:
            reply = await self.webhooks.ask_before(app, BEFORE_SEND, {
                "CallbackCommand": BEFORE_SEND, "From_Account": msg.sender, "To_Account": to,
                "MsgSeq": seq, "MsgRandom": msg.msg_random, "MsgTime": time, "MsgKey": key,
                "OnlineOnlyFlag": int(not msg.keep), "MsgBody": body,
                "CloudCustomData": custom, "EventTime": int(now * 1000),
            }, order_key=f"c2c:{msg.sender}", origin=msg.origin)
            own_code = rules.callback_refusal(reply)
            if own_code is not None:
                info = reply.get("ErrorInfo") if isinstance(reply, dict) else None
                raise own_code(info if isinstance(info, str) and info else None)
            verdict = before_send_verdict(reply)
            if verdict.silent:
                return Sent(time, seq, key)  # Tencent: dropped, the sender is told it went
            if not verdict.allow:
                raise errors.C2CRefusedByCallback()
            if verdict.msg_body is not None:
                body = verdict.msg_body
            if verdict.cloud_custom_data is not None:
                custom = verdict.cloud_custom_data

        dup_key = rules.duplicate_key(sdkappid, msg.sender, [to], msg.msg_seq,
                                      msg.msg_random, msg.body)
        first = await self.guards.remember_first(dup_key, f"{time} {seq} {key}",
                                                 rules.DUPLICATE_WINDOW_S)
        if first is not None:
            return _remembered(first, time, seq, key)
        try:
            fresh = True
            if msg.keep:
                stored = C2CMessage(msg.sender, time, seq, msg.msg_random, body, custom,
                                    msg.counts_unread, msg.sender_roam)
                fresh = bool(await self.store.c2c.store(sdkappid, stored, [to]))
        except BaseException:
            await self.guards.forget(dup_key)  # failed: a retry is a new send
            raise
        if not fresh:  # the same MsgKey is kept already: the same message
            return Sent(time, seq, key, duplicate=True)
        pushed = frame(msg.sender, to, seq, msg.msg_random, time, key, body, custom)
        await self._deliver(sdkappid, msg, [to], pushed)
        if msg.tell_after:
            unread = -1
            if self.webhooks.wants(app, C2C_AFTER_SEND_MSG):
                unread = await self.store.c2c.unread_total(sdkappid, to)
            await self.events.emit(C2CMessageSent(
                sdkappid, msg.sender, to, seq, msg.msg_random, time, key, body, custom,
                not msg.keep, unread, int(now * 1000), msg.origin))
        return Sent(time, seq, key)

    async def send_batch(self, app: App, msg: C2CSend, to_accounts: Sequence[str], *,
                         now: float) -> Sent:
        """batchsendmsg to existing accounts: one MsgKey for every recipient."""
        sdkappid = app.sdkappid
        now_s = int(now)
        time = rules.msg_time(now_s, msg.msg_time)
        seq = msg.msg_seq if msg.msg_seq is not None else \
            rules.pick_seq(now, _random.getrandbits(22))
        key = rules.msg_key(seq, msg.msg_random, time)
        dup_key = rules.duplicate_key(sdkappid, msg.sender, to_accounts, msg.msg_seq,
                                      msg.msg_random, msg.body)
        first = await self.guards.remember_first(dup_key, f"{time} {seq} {key}",
                                                 rules.DUPLICATE_WINDOW_S)
        if first is not None:
            return _remembered(first, time, seq, key)
        try:
            fresh = list(to_accounts)
            if msg.keep:
                stored = C2CMessage(msg.sender, time, seq, msg.msg_random, msg.body,
                                    msg.cloud_custom_data, msg.counts_unread, msg.sender_roam)
                fresh = await self.store.c2c.store(sdkappid, stored, to_accounts)
        except BaseException:
            await self.guards.forget(dup_key)
            raise
        for to in fresh:  # one frame each: it names its recipient
            pushed = frame(msg.sender, to, seq, msg.msg_random, time, key, msg.body,
                           msg.cloud_custom_data)
            await self._deliver(sdkappid, msg, [to], pushed)
        return Sent(time, seq, key)

    async def _deliver(self, sdkappid: int, msg: C2CSend, to: list[str],
                       pushed: dict[str, Any]) -> None:
        if msg.sender in to:  # to oneself: every connection but the sending one
            await push_to_users(self.events, sdkappid, to, pushed, except_conn=msg.except_conn)
            return
        await push_to_users(self.events, sdkappid, to, pushed)
        if msg.push_to_sender:
            await push_to_users(self.events, sdkappid, [msg.sender], pushed,
                                except_conn=msg.except_conn)

    async def deliver_imported(self, sdkappid: int, message: C2CMessage, to: str) -> None:
        """importmsg with SyncFromOldSystem 5: the recipient's connections get it."""
        key = rules.msg_key(message.msg_seq, message.msg_random, message.msg_time)
        await push_to_users(self.events, sdkappid, [to], frame(
            message.from_account, to, message.msg_seq, message.msg_random, message.msg_time,
            key, message.body, message.cloud_custom_data))

    async def withdraw(self, app: App, from_account: str, to_account: str, key: str, *,
                       now: float, origin: Origin = REST) -> None:
        """admin_msgwithdraw: flag the kept message, tell both parties' connections, then
        C2C.CallbackAfterMsgWithDraw."""
        seq, random, time = rules.parse_msg_key(key)
        outcome = await self.store.c2c.withdraw(app.sdkappid, from_account, to_account,
                                                seq, random, time)
        if outcome == WithdrawOutcome.NOT_FOUND:
            raise errors.C2CMsgNotFound(
                f"no message {errors.shown(key)} from {errors.shown(from_account)} to "
                f"{errors.shown(to_account)}")
        if outcome == WithdrawOutcome.ALREADY:
            raise errors.C2CMsgAlreadyWithdrawn(
                f"message {errors.shown(key)} was withdrawn already")
        await push_to_users(self.events, app.sdkappid, list(dict.fromkeys(
            [from_account, to_account])), {
            "event": WITHDRAWN_EVENT, "From_Account": from_account, "To_Account": to_account,
            "MsgKey": key, "MsgSeq": seq, "MsgRandom": random, "MsgTime": time})
        unread = -1
        if self.webhooks.wants(app, C2C_AFTER_MSG_WITHDRAW):
            unread = await self.store.c2c.unread_total(app.sdkappid, to_account)
        await self.events.emit(C2CMessageWithdrawn(app.sdkappid, from_account, to_account,
                                                   key, unread, int(now * 1000), origin))


def _remembered(value: str, time: int, seq: int, key: str) -> Sent:
    """The first send's answer, from its duplicate-key value."""
    parts = value.split(" ")
    if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
        return Sent(int(parts[0]), int(parts[1]), parts[2], duplicate=True)
    return Sent(time, seq, key, duplicate=True)
