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


Event = (MembersJoined | MembersExited | GroupDestroyed | MemberStateChanged | MarksChanged
         | ConnectionStateChanged | AccountsDeleted)
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

