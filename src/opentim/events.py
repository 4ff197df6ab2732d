"""The internal event point: every non-silent change to group membership passes here.

add_group_member, delete_group_member, gateway joins/leaves, mark changes and connection
state changes emit; imports never do. Webhook
delivery and client notifications subscribe to this bus, so "silent" is a property that a
test can check by subscribing and seeing nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a change came from, for webhook query strings (ClientIP, OptPlatform)."""

    client_ip: str = ""
    platform: str = "RESTAPI"  # RESTAPI, Web, Android, iOS, Windows, Mac, iPad, Linux, Unknown


REST = Origin()


@dataclass(frozen=True, slots=True)
class MembersJoined:
    sdkappid: int
    group_id: str
    group_type: str
    operator: str
    members: tuple[str, ...]
    join_type: str  # "Invited" (REST add_group_member)
    event_time_ms: int
    origin: Origin = REST


@dataclass(frozen=True, slots=True)
class MembersExited:
    sdkappid: int
    group_id: str
    group_type: str
    operator: str
    members: tuple[str, ...]
    exit_type: str  # "Kicked" (REST delete_group_member)
    event_time_ms: int
    origin: Origin = REST


@dataclass(frozen=True, slots=True)
class GroupDestroyed:
    sdkappid: int
    group_id: str
    group_type: str
    operator: str
    event_time_ms: int
    origin: Origin = REST
    # For Group.CallbackAfterGroupDestroyed: the owner, the name, the members at the end
    # (None: not listed, as for a Community).
    owner: str = ""
    name: str = ""
    members: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class MemberStateChanged:
    """An account went online or offline in an AVChatRoom/Community online list.

    Emitted once per account (not per connection): on its first connection's join and
    when its last connection leaves. ``cause``: Join, Quit, HeartbeatInterrupt, LinkClose.
    """

    sdkappid: int
    group_id: str
    group_type: str
    account: str
    online: bool
    cause: str
    event_time_ms: int
    origin: Origin = REST


@dataclass(frozen=True, slots=True)
class MarksChanged:
    """Marks of online AVChatRoom members changed (modify_user_info, robots, gateway)."""

    sdkappid: int
    group_id: str
    operator: str
    command_type: int  # 1 set, 2 delete
    members: tuple[tuple[str, tuple[int, ...]], ...]  # account, every mark it now holds
    event_time_ms: int
    origin: Origin = REST


@dataclass(frozen=True, slots=True)
class ConnectionStateChanged:
    """A client connection logged in, logged out, or was disconnected (State.StateChange).

    ``action``/``reason``: Login/Register, Logout/Unregister, Disconnect/LinkClose,
    Disconnect/TimeOut.
    """

    sdkappid: int
    account: str
    conn_id: str
    action: str
    reason: str
    event_time_ms: int
    origin: Origin = REST


@dataclass(frozen=True, slots=True)
class AccountsDeleted:
    """``account_delete`` removed these accounts: their connections, in every process,
    are closed and their online-list entries go (the gateway handles this)."""

    sdkappid: int
    accounts: tuple[str, ...]
    event_time_ms: int
    origin: Origin = REST


@dataclass(frozen=True, slots=True)
class AccountKicked:
    """``im_open_login_svc/kick``: every connection of the account, in every process, is
    closed (the gateway handles this); unlike a deletion, it may connect again at once."""

    sdkappid: int
    account: str
    event_time_ms: int
    origin: Origin = REST


# --- deliveries: frames for connections, carried to every process by gateway/relay.py ----

# MsgPriority, most important first. Under overload a connection sheds from the end.
PRIORITIES = ("High", "Normal", "Low", "Lowest")
NORMAL = 1


@dataclass(frozen=True, slots=True)
class GroupPush:
    """A frame for a group's audience (a message, a system notification, a recall).

    ``room``: the connections that joined the group's room (AVChatRoom), restricted to
    ``accounts`` when given. Otherwise every open connection of ``accounts`` (the members,
    read by ``messaging.push_to_group``). ``seq`` > 0 marks a group message: each process
    hands a group's messages to its connections in ``seq`` order. ``except_conn``: the
    sending connection, which has the message in its reply.
    """

    sdkappid: int
    group_id: str
    frame: dict[str, Any]
    room: bool
    accounts: tuple[str, ...] | None = None
    priority: int = NORMAL
    seq: int = 0
    except_conn: str = ""


@dataclass(frozen=True, slots=True)
class UserPush:
    """A frame for every open connection of ``accounts`` (one-to-one messages, recalls)."""

    sdkappid: int
    accounts: tuple[str, ...]
    frame: dict[str, Any]
    except_conn: str = ""


@dataclass(frozen=True, slots=True)
class GroupMessageSent:
    """A group message was stored and delivered (Group.CallbackAfterSendMsg)."""

    sdkappid: int
    group_id: str
    group_type: str
    from_account: str
    operator: str
    msg_seq: int
    msg_time: int
    random: int
    msg_body: list[dict[str, Any]]
    cloud_custom_data: str
    online_only: bool
    priority: str
    event_time_ms: int
    origin: Origin = REST


@dataclass(frozen=True, slots=True)
class GroupMessagesRecalled:
    """group_msg_recall recalled these messages (Group.CallbackAfterRecallMsg)."""

    sdkappid: int
    group_id: str
    group_type: str
    operator: str
    msg_seqs: tuple[int, ...]
    event_time_ms: int
    origin: Origin = REST


@dataclass(frozen=True, slots=True)
class C2CMessageSent:
    """A one-to-one message was sent (C2C.CallbackAfterSendMsg): sendmsg and the gateway's
    send_c2c_msg, not batchsendmsg or importmsg (Tencent calls no callback for those).
    ``unread_msg_num``: the recipient's unread one-to-one messages, all conversations."""

    sdkappid: int
    from_account: str
    to_account: str
    msg_seq: int
    msg_random: int
    msg_time: int
    msg_key: str
    msg_body: list[dict[str, Any]]
    cloud_custom_data: str
    online_only: bool
    unread_msg_num: int
    event_time_ms: int
    origin: Origin = REST


@dataclass(frozen=True, slots=True)
class C2CMessageWithdrawn:
    """admin_msgwithdraw withdrew a one-to-one message (C2C.CallbackAfterMsgWithDraw)."""

    sdkappid: int
    from_account: str
    to_account: str
    msg_key: str
    unread_msg_num: int  # the recipient's, after the withdrawal
    event_time_ms: int
    origin: Origin = REST


# --- group administration (Group.CallbackAfter* of services/group_open_http_svc/admin.py,
# attrs.py and groups.py) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupCreated:
    """create_group made a group (Group.CallbackAfterCreateGroup; import_group is silent)."""

    sdkappid: int
    group_id: str
    group_type: str
    operator: str
    owner: str
    name: str
    members: tuple[str, ...]  # the initial members but the owner
    app_defined_data: tuple[tuple[str, str], ...]
    event_time_ms: int
    origin: Origin = REST


@dataclass(frozen=True, slots=True)
class GroupInfoChanged:
    """modify_group_base_info changed the name, introduction, notification or face URL
    (``changes``: Tencent field name and new value; other fields call no callback)."""

    sdkappid: int
    group_id: str
    group_type: str
    operator: str
    changes: tuple[tuple[str, str], ...]
    event_time_ms: int
    origin: Origin = REST


@dataclass(frozen=True, slots=True)
class GroupOwnerChanged:
    sdkappid: int
    group_id: str
    group_type: str
    operator: str
    old_owner: str
    new_owner: str
    event_time_ms: int
    origin: Origin = REST


@dataclass(frozen=True, slots=True)
class MemberFieldChanged:
    """modify_group_member_info changed a member's Role or NameCard (None: unchanged)."""

    sdkappid: int
    group_id: str
    group_type: str
    operator: str
    account: str
    role: str | None
    name_card: str | None
    event_time_ms: int
    origin: Origin = REST


@dataclass(frozen=True, slots=True)
class GroupAttrChanged:
    """A group attribute command changed attributes; ``option_type``: set, modify, clear,
    delete; ``attrs``: the pairs the request set (delete: the keys, value "")."""

    sdkappid: int
    group_id: str
    group_type: str
    operator: str
    option_type: str
    attrs: tuple[tuple[str, str], ...]
    event_time_ms: int
    origin: Origin = REST


@dataclass(frozen=True, slots=True)
class GroupFilled:
    """add_group_member filled the group, or found it full (Group.CallbackAfterGroupFull)."""

    sdkappid: int
    group_id: str
    event_time_ms: int
    origin: Origin = REST


Event = (MembersJoined | MembersExited | GroupDestroyed | MemberStateChanged | MarksChanged
         | ConnectionStateChanged | AccountsDeleted | AccountKicked | GroupPush | UserPush
         | GroupMessageSent | GroupMessagesRecalled | C2CMessageSent | C2CMessageWithdrawn
         | GroupCreated | GroupInfoChanged | GroupOwnerChanged | MemberFieldChanged
         | GroupAttrChanged | GroupFilled)
Subscriber = Callable[[Event], Awaitable[None] | None]


@dataclass
class EventBus:
    subscribers: list[Subscriber] = field(default_factory=list)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self.subscribers.append(subscriber)
        return lambda: self.subscribers.remove(subscriber)

    async def emit(self, event: Event) -> None:
        for subscriber in list(self.subscribers):
            try:
                result = subscriber(event)
                if result is not None:
                    await result
            except Exception:
                # A failing subscriber (e.g. a full webhook queue) must not fail the request
                # that already changed the group.
                log.exception("event subscriber failed for %r", event)

