"""Going online and offline in live groups: the I/O between a connection and the list.

The rules (which types have a list, who may join it, how a change is reported) are in
``opentim.domain.online``; this layer reads the group's type, the member's profile and
role, calls the presence store and tells the event bus. A user is online in a group
while at least one of its connections is in it; the event bus hears about an account
once, when it goes online and when it goes offline.

Heartbeat interruptions (for HeartbeatRecover) are remembered by the presence store, so a
user who timed out on one server process is recognised when it comes back through another.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from opentim import errors
from opentim.domain import groups as rules
from opentim.domain import online as online_rules
from opentim.domain.groups import Group, GroupType
from opentim.domain.online import MARK_TYPES, ONLINE_LIST_TYPES
from opentim.events import REST, EventBus, GroupDestroyed, MemberStateChanged, Origin
from opentim.messaging.moderation import JoinBans
from opentim.presence import Joined, Offline, PresenceStore
from opentim.storage.sql import SqlStore

# A connection's profile (which also proves the account exists) is re-read after this
# long: a deleted account's connections are closed when the deletion is announced, and
# this bounds what a connection that missed the announcement (pub/sub is at-most-once)
# can still do.
PROFILE_TTL = 60.0


class GroupTypes:
    """Short-lived cache of group types, so the online-list hot path skips SQL.

    A group destroyed through this process is forgotten at once; one destroyed through
    another process may be seen as existing for up to ``ttl`` seconds. Only groups that
    exist are kept: a group created a moment ago (through any process) is found at once.
    """

    def __init__(self, store: SqlStore, ttl: float = 2.0) -> None:
        self._store = store
        self._ttl = ttl
        self._entries: dict[tuple[int, str], tuple[GroupType, float]] = {}

    async def get(self, sdkappid: int, group_id: str) -> GroupType | None:
        key = (sdkappid, group_id)
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        group = (await self._store.groups.get(sdkappid, [group_id])).get(group_id)
        if group is None:
            return None
        if len(self._entries) > 100_000:
            self._entries.clear()
        self._entries[key] = (group.type, now + self._ttl)
        return group.type

    def forget(self, sdkappid: int, group_id: str) -> None:
        self._entries.pop((sdkappid, group_id), None)


async def load_group(store: SqlStore, sdkappid: int, group_id: str) -> Group:
    """The group, or 10015 for an ID that cannot exist and 10010 for one that does not
    (every command naming a group, REST, gateway and SDK bridge alike)."""
    rules.check_group_id(group_id)
    found = (await store.groups.get(sdkappid, [group_id])).get(group_id)
    if found is None:
        raise errors.GroupNotFound(group_id=group_id)
    return found


async def require_online_list_group(types: GroupTypes, sdkappid: int, group_id: str,
                                    allowed: tuple[GroupType, ...] = ONLINE_LIST_TYPES,
                                    ) -> GroupType:
    rules.check_group_id(group_id)
    return online_rules.check_online_list_type(group_id, await types.get(sdkappid, group_id),
                                               allowed)


async def require_av_group(types: GroupTypes, sdkappid: int, group_id: str) -> GroupType:
    """The group exists and is a type with marks, robots and an online count."""
    return await require_online_list_group(types, sdkappid, group_id, MARK_TYPES)


async def announce(types: GroupTypes, events: EventBus, sdkappid: int, group_id: str,
                   accounts: list[str], *, online: bool, cause: str, now: float,
                   origin: Origin = REST) -> None:
    """State changes made without a connection: robots and marks 500 set or lapsed."""
    group_type = await types.get(sdkappid, group_id)
    if group_type is None:
        return
    for account in accounts:
        await events.emit(MemberStateChanged(
            sdkappid, group_id, group_type.value, account, online, cause, int(now * 1000),
            origin,
        ))


@dataclass(eq=False)
class Presence:
    """One client connection's place in groups (the gateway owns the socket)."""

    conn_id: str
    sdkappid: int
    account: str
    groups: dict[str, GroupType] = field(default_factory=dict)
    origin: Origin = REST
    profile: tuple[str, str] | None = None  # (nick, avatar), read at the first join
    profile_read_at: float = 0.0  # when (``now``) that read was


class OnlineService:
    def __init__(self, store: SqlStore, presence: PresenceStore, events: EventBus,
                 types: GroupTypes) -> None:
        self.store = store
        self.presence = presence
        self.events = events
        self.types = types
        self.bans = JoinBans(store)  # ban_group_member: refused joins
        events.subscribe(self._on_event)

    async def join(self, conn: Presence, group_id: str, *, now: float,
                   entered: Callable[[], None] | None = None) -> None:
        """``entered`` runs once the join is stored and before it is announced, so the
        joining connection is in its room when this process delivers the announcement
        (as the other processes' connections are when they receive it)."""
        group_type = await require_online_list_group(self.types, conn.sdkappid, group_id)
        if group_type is GroupType.AVCHATROOM:  # a banned member may not come back (10007)
            await self.bans.check(conn.sdkappid, group_id, conn.account, now=now)
        if online_rules.needs_membership(group_type):
            roles = await self.store.members.roles(conn.sdkappid, group_id, [conn.account])
            if not roles:
                raise online_rules.not_a_member_error(conn.account, group_id)
        profile = conn.profile
        if profile is None or now - conn.profile_read_at > PROFILE_TTL:
            # Read once per connection (and PROFILE_TTL): joins and churn then cost no SQL
            # for AV groups. A nick or avatar changed meanwhile (account_import,
            # portrait_set) shows from a later read (docs/rest-commands.md#portrait_set).
            profile = (await self.store.accounts.profiles(conn.sdkappid, [conn.account])).get(
                conn.account)
            if profile is None:
                conn.profile = None
                raise errors.AccountNotFound(accounts=[conn.account])
            conn.profile = profile
            conn.profile_read_at = now
        joined = await self.presence.join(
            conn.sdkappid, group_id, conn.account, conn.conn_id,
            nick=profile[0], avatar=profile[1], now=now,
        )
        conn.groups[group_id] = group_type
        if entered is not None:
            entered()
        if joined is Joined.AFTER_LAPSE:
            # Its lapsed mark 500 was still listed; this join removed it before the sweep
            # could report it, so report it here, as the sweep would, before the Online.
            await self.report_offline(
                [Offline(conn.sdkappid, group_id, conn.account, "mark500_expired")], now=now)
        if joined.became_online:
            cause = "HeartbeatRecover" if joined is Joined.RECOVERED else "Join"
            await self._state(conn, group_id, group_type, online=True, cause=cause, now=now)

    async def quit(self, conn: Presence, group_id: str, *, now: float,
                   cause: str = "Quit") -> None:
        group_type = conn.groups.pop(group_id, None)
        if group_type is None:
            raise errors.NoPermission(f"this connection is not in group {group_id!r}")
        # The store remembers an interruption, so the next join (through any process)
        # within RECOVER_WINDOW is reported as HeartbeatRecover.
        went_offline = await self.presence.leave(conn.sdkappid, group_id, conn.account,
                                                 conn.conn_id, now=now,
                                                 interrupted=cause == "HeartbeatInterrupt")
        if went_offline:
            await self._state(conn, group_id, group_type, online=False, cause=cause, now=now)

    async def disconnect(self, conn: Presence, *, cause: str, now: float) -> None:
        """Leave every group the connection is in (closed, lost, or timed out)."""
        for group_id in list(conn.groups):
            # Another task (a removal, a kick) may have taken it out meanwhile.
            if group_id in conn.groups:
                await self.quit(conn, group_id, now=now, cause=cause)

    async def report_offline(self, gone: list[Offline], *, now: float) -> None:
        """Members a presence sweep took offline: a dead process's users, lapsed 500s.

        A dead process's users count as heartbeat interruptions; the store recorded them
        as such, so coming back within RECOVER_WINDOW is HeartbeatRecover.
        """
        for member in gone:
            cause = online_rules.member_state_cause(member.reason == "node_lost")
            await announce(self.types, self.events, member.app, member.group,
                           [member.account], online=False, cause=cause, now=now)

    async def _state(self, conn: Presence, group_id: str, group_type: GroupType, *,
                     online: bool, cause: str, now: float) -> None:
        await self.events.emit(MemberStateChanged(
            conn.sdkappid, group_id, group_type.value, conn.account, online, cause,
            int(now * 1000), conn.origin,
        ))

    async def _on_event(self, event: object) -> None:
        if isinstance(event, GroupDestroyed):
            self.types.forget(event.sdkappid, event.group_id)
            await self.presence.drop_group(event.sdkappid, event.group_id)
