"""Sending a group message: one path for REST send_group_msg and the gateway's.

In order, each step able to refuse before anything is stored or delivered:
1. the body and fields (``domain/messages.py``), the group, the sender (exists; a member
   when the group keeps a roster and the sender is not the App admin speaking as someone);
2. mutes and bans (``moderation.check_sender``);
3. duplicates: the same Random from the same sender within five minutes is answered with
   the first send's MsgSeq/MsgTime and delivered no second time (``guards``);
4. the group's send rate (App.group_msg_rate a second; High may use twice the rate);
5. Group.CallbackBeforeSendMsg (may refuse, drop silently, or replace the body);
6. storing (which numbers it), then delivery to the online audience, then the
   after-callback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentim import errors
from opentim.domain import messages as rules
from opentim.domain.apps import App
from opentim.domain.groups import Group
from opentim.events import REST, EventBus, GroupMessageSent, Origin
from opentim.messaging import moderation, push_to_group
from opentim.messaging.guards import SendGuards
from opentim.online import load_group
from opentim.storage.base import GroupMessage
from opentim.storage.sql import SqlStore
from opentim.webhooks.delivery import WebhookDispatcher
from opentim.webhooks.payloads import BEFORE_SEND_MSG as BEFORE_SEND

_PENDING = "-"  # a duplicate key's value while its first send is in progress


@dataclass(frozen=True, slots=True)
class GroupSend:
    """One message to send, as decoded from REST or a gateway frame."""

    group_id: str
    sender: str | None  # From_Account; None: the App admin, speaking as the group
    operator: str  # who asked: the REST caller, or the connection's account
    body: list[dict[str, Any]]
    random: int
    priority: int = 1  # index into rules.MSG_PRIORITIES
    online_only: bool = False
    cloud_custom_data: str = ""
    to_accounts: Sequence[str] | None = None
    # The sender must be a member (a client sending in a roster group); an App admin may
    # speak as any existing account.
    sender_must_be_member: bool = False
    exempt: bool = False  # App admin or the group's owner/admin: not muted by MuteAllMember
    # ForbidCallbackControl: ForbidBeforeSendMsgCallback, ForbidAfterSendMsgCallback.
    forbid_callbacks: frozenset[str] = frozenset()
    origin: Origin = REST
    except_conn: str = ""  # the sending connection: it has the message in its reply


@dataclass(frozen=True, slots=True)
class Sent:
    msg_seq: int
    msg_time: int
    duplicate: bool = False


class GroupMessaging:
    def __init__(self, store: SqlStore, events: EventBus, guards: SendGuards,
                 webhooks: WebhookDispatcher) -> None:
        self.store = store
        self.events = events
        self.guards = guards
        self.webhooks = webhooks

    async def load(self, sdkappid: int, group_id: str) -> Group:
        return await load_group(self.store, sdkappid, group_id)

    async def send(self, app: App, msg: GroupSend, *, now: float,
                   group: Group | None = None) -> Sent:
        sdkappid = app.sdkappid
        rules.check_cloud_custom_data(msg.cloud_custom_data)
        if group is None:
            group = await self.load(sdkappid, msg.group_id)
        targets = rules.check_targets(group, msg.to_accounts)
        if targets is not None:
            roles = await self.store.members.roles(sdkappid, group.group_id, targets)
            if outside := [t for t in targets if t not in roles]:
                raise errors.InvalidParameter(
                    f"To_Account {', '.join(map(errors.shown, outside[:5]))}: not members "
                    f"of group {group.group_id!r}")
        if msg.sender and not msg.sender_must_be_member and not \
                await self.store.accounts.existing(sdkappid, [msg.sender]):
            raise errors.AccountNotFound(accounts=[msg.sender])
        stored = rules.takes_seq(group, online_only=msg.online_only,
                                 targeted=targets is not None)
        # Storing checks membership; a message that is not stored is checked here.
        if msg.sender and msg.sender_must_be_member and not stored and \
                not await self.store.members.roles(sdkappid, group.group_id, [msg.sender]):
            raise errors.NoPermission(f"{msg.sender!r} is not a member of group "
                                      f"{group.group_id!r}")
        now_s = int(now)
        await moderation.check_sender(self.store, group, msg.sender, now=now_s,
                                      is_admin=msg.exempt)

        # Duplicates first: a retry gets the first send's answer, never 10023.
        dup_key = rules.duplicate_key(sdkappid, group.group_id, msg.sender, msg.random)
        first = await self.guards.remember_first(dup_key, _PENDING, rules.DUPLICATE_WINDOW_S)
        if first is not None:
            seq, _, time = first.partition(":")
            return Sent(int(seq) if seq.isdigit() else 0,
                        int(time) if time.isdigit() else now_s, duplicate=True)
        try:
            await self._check_rate(app, group, msg.priority)
            sent = await self._send(app, group, msg, targets, now)
        except BaseException:
            await self.guards.forget(dup_key)  # failed: a retry is a new send
            raise
        await self.guards.update(dup_key, f"{sent.msg_seq}:{sent.msg_time}",
                                 rules.DUPLICATE_WINDOW_S)
        return sent

    async def _check_rate(self, app: App, group: Group, priority: int) -> None:
        rate = app.group_msg_rate
        if rate <= 0:
            return
        # High messages (the host's) get headroom the audience's chatter cannot use up.
        limit = rate * 2 if priority == 0 else rate
        if not await self.guards.take(f"rate:{app.sdkappid}:{group.group_id}", limit, 1.0):
            raise errors.GroupMsgRateLimit(
                f"group {group.group_id!r} is over its {rate} messages a second")

    async def _send(self, app: App, group: Group, msg: GroupSend,
                    targets: tuple[str, ...] | None, now: float) -> Sent:
        now_s = int(now)
        body, custom = msg.body, msg.cloud_custom_data
        priority_name = rules.MSG_PRIORITIES[msg.priority]
        sender = msg.sender or ""
        reply = None if "ForbidBeforeSendMsgCallback" in msg.forbid_callbacks else \
            await self.webhooks.ask_before(app, BEFORE_SEND, {
            "CallbackCommand": BEFORE_SEND,
            "GroupId": group.group_id,
            "Type": group.type.value,
            "From_Account": sender,
            "Operator_Account": msg.operator,
            "Random": msg.random,
            "OnlineOnlyFlag": int(msg.online_only),
            "MsgBody": body,
            "CloudCustomData": custom,
            "EventTime": int(now * 1000),
        }, order_key=f"g:{group.group_id}", origin=msg.origin)
        verdict = rules.before_send_verdict(reply)
        if verdict.silent:
            return Sent(0, now_s)  # Tencent: dropped, and the sender is told it was sent
        if not verdict.allow:
            raise errors.RefusedByCallback(
                "the app's Group.CallbackBeforeSendMsg refused this message")
        if verdict.msg_body is not None:
            body = verdict.msg_body
        if verdict.cloud_custom_data is not None:
            custom = verdict.cloud_custom_data

        seq = 0
        if rules.takes_seq(group, online_only=msg.online_only, targeted=targets is not None):
            stored = GroupMessage(msg.sender, now_s, msg.random, body, custom, priority_name)
            got = await self.store.messages.append(
                app.sdkappid, group.group_id, stored, keep=rules.keeps_history(group),
                sender_must_be_member=msg.sender_must_be_member)
            if got is None:
                raise errors.NoPermission(f"{sender!r} is not a member of group "
                                          f"{group.group_id!r}")
            seq = got
        frame = {
            "event": "group_message", "GroupId": group.group_id, "Type": group.type.value,
            "MsgSeq": seq, "MsgTime": now_s, "MsgRandom": msg.random, "From_Account": sender,
            "MsgBody": body, "CloudCustomData": custom, "MsgPriority": priority_name,
            "OnlineOnlyFlag": int(msg.online_only),
        }
        await push_to_group(self.events, group, frame,
                            priority=msg.priority, seq=seq, to_accounts=targets,
                            except_conn=msg.except_conn)
        if "ForbidAfterSendMsgCallback" not in msg.forbid_callbacks:
            await self.events.emit(GroupMessageSent(
                app.sdkappid, group.group_id, group.type.value, sender, msg.operator, seq,
                now_s, msg.random, body, custom, msg.online_only, priority_name,
                int(now * 1000), msg.origin))
        return Sent(seq, now_s)
