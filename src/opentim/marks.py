"""Marks and robots on AVChatRoom members: the I/O between the commands and the stores.

Used by the REST commands (the App admin: any mark, special marks included) and the
gateway (a connected group owner or App admin: marks >= 1000 only). The rules are in
``opentim.domain.marks`` (values, limits, who may change what) and
``opentim.domain.online`` (which groups); the presence store enforces the limits
atomically with the values it was built with.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentim.domain import marks as rules
from opentim.domain.apps import App
from opentim.domain.marks import SET, Items
from opentim.domain.online import check_online_list_feature
from opentim.events import REST, EventBus, MarksChanged, Origin
from opentim.online import GroupTypes, announce, require_av_group
from opentim.presence import MarkLimitError, MarkResult, PresenceStore
from opentim.storage.sql import SqlStore


class MarkService:
    """``mark500_ttl``: how long a mark 500 (robots included) keeps a member listed."""

    def __init__(self, store: SqlStore, presence: PresenceStore, events: EventBus,
                 types: GroupTypes, *, mark500_ttl: float) -> None:
        self.store = store
        self.presence = presence
        self.events = events
        self.types = types
        self.mark500_ttl = mark500_ttl

    async def modify_marks(self, app: App, group_id: str, command_type: int, items: Items, *,
                           operator: str, now: float, origin: Origin = REST,
                           by_member: bool = False) -> MarkResult:
        """Set (1) or delete (2) marks; FAILs when no named account is online.

        ``by_member``: the operator is a connected user (the gateway), who must be an App
        admin or the group's owner and may change custom marks only; otherwise the App
        admin through REST.
        """
        sdkappid = app.sdkappid
        await require_av_group(self.types, sdkappid, group_id)
        check_online_list_feature(app)
        if by_member and operator not in app.admins:
            group = (await self.store.groups.get(sdkappid, [group_id])).get(group_id)
            rules.check_member_may_change_marks(operator, app.admins,
                                                None if group is None else group.owner)
        rules.check_command_type(command_type)
        rules.check_items(items, allow_special=rules.GATEWAY_ALLOWS_SPECIAL if by_member
                          else rules.REST_ALLOWS_SPECIAL)
        try:
            if command_type == SET:
                profiles = await self.store.accounts.profiles(sdkappid,
                                                         rules.wants_always_online(items))
                applicable = rules.pinnable(items, profiles)
                result = await self.presence.set_marks(
                    sdkappid, group_id, applicable, now=now, profiles=profiles,
                    mark500_ttl=self.mark500_ttl,
                ) if applicable else MarkResult()
            else:
                result = await self.presence.delete_marks(sdkappid, group_id, items, now=now)
        except MarkLimitError as exc:
            await self._announce_offline(sdkappid, group_id, exc.went_offline, now, origin)
            raise rules.limit_error(exc.kind, exc.mark) from None
        if not result.members:
            await self._announce_offline(sdkappid, group_id, result.went_offline, now, origin)
            raise rules.nobody_online_error()
        return await self._announce(sdkappid, group_id, operator, command_type, result, now,
                                    origin)

    async def add_robots(self, app: App, group_id: str, accounts: Sequence[str], *,
                         operator: str, now: float, origin: Origin = REST) -> MarkResult:
        sdkappid = app.sdkappid
        await require_av_group(self.types, sdkappid, group_id)
        check_online_list_feature(app)
        rules.check_robot_accounts(accounts)
        profiles = await self.store.accounts.profiles(sdkappid, accounts)
        missing = [a for a in dict.fromkeys(accounts) if a not in profiles]
        if missing:
            raise rules.robots_not_imported_error(missing)
        try:
            result = await self.presence.add_robots(
                sdkappid, group_id, accounts, now=now, profiles=profiles, ttl=self.mark500_ttl,
            )
        except MarkLimitError as exc:
            await self._announce_offline(sdkappid, group_id, exc.went_offline, now, origin)
            raise rules.limit_error(exc.kind, exc.mark) from None
        return await self._announce(sdkappid, group_id, operator, SET, result, now, origin)

    async def del_robots(self, app: App, group_id: str, accounts: Sequence[str], *,
                         operator: str, now: float, origin: Origin = REST) -> MarkResult:
        sdkappid = app.sdkappid
        await require_av_group(self.types, sdkappid, group_id)
        check_online_list_feature(app)
        rules.check_robot_accounts(accounts)
        result = await self.presence.del_robots(sdkappid, group_id, accounts, now=now)
        return await self._announce(sdkappid, group_id, operator, rules.DELETE, result, now,
                                    origin)

    async def _announce(self, sdkappid: int, group_id: str, operator: str, command_type: int,
                        result: MarkResult, now: float, origin: Origin) -> MarkResult:
        if result.members:
            await self.events.emit(MarksChanged(
                sdkappid, group_id, operator, command_type,
                tuple((m.account, m.marks) for m in result.members), int(now * 1000), origin,
            ))
        # Mark 500 brings unconnected members online and takes them offline again. Offline
        # first: a lapsed 500 set again is in both lists, and its lapse came first.
        await self._announce_offline(sdkappid, group_id, result.went_offline, now, origin)
        await announce(self.types, self.events, sdkappid, group_id, result.went_online,
                       online=True, cause="Join", now=now, origin=origin)
        return result

    async def _announce_offline(self, sdkappid: int, group_id: str, accounts: list[str],
                                now: float, origin: Origin) -> None:
        """Accounts a mark call unlisted: 500 deleted, or lapsed and cleaned up by the call.

        Called for failing calls too: the store removes lapsed 500s before it finds out that
        the call fails, and nothing else will report those members. "Quit", as the sweep
        reports a lapse (OnlineService.report_offline).
        """
        await announce(self.types, self.events, sdkappid, group_id, accounts, online=False,
                       cause="Quit", now=now, origin=origin)
