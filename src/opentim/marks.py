"""Marks and robots on AVChatRoom members (seeds 000 and 003, protocol.md §0 and §5).

Shared by the REST commands (the App admin: any mark, special marks included) and the
gateway (a connected group owner or App admin: marks >= 1000 only). The limits themselves
(10 distinct marks, 1000 members per mark) are enforced atomically by the presence store.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentim import errors
from opentim.domain.apps import App
from opentim.domain.groups import GroupType
from opentim.events import REST, MarksChanged, Origin
from opentim.online import require_online_list_group
from opentim.presence.base import (
    MARK_ALWAYS_ONLINE,
    MAX_DISTINCT_MARKS,
    MAX_MEMBERS_PER_MARK,
    MIN_CUSTOM_MARK,
    SPECIAL_MARKS,
    MarkResult,
)
from opentim.presence.errors import InvalidMarkError, MarkLimitError
from opentim.runtime import Runtime

SET = 1
DELETE = 2
MAX_ACCOUNTS_PER_CALL = 500

Items = Sequence[tuple[str, Sequence[int]]]


def require_online_list_feature(app: App) -> None:
    missing = app.missing_online_list_feature()
    if missing:
        raise errors.NoPermission(missing)


async def require_av_group(runtime: Runtime, sdkappid: int, group_id: str) -> None:
    await require_online_list_group(runtime.group_types, sdkappid, group_id,
                                    allowed=(GroupType.AVCHATROOM,))


def check_items(items: Items, *, allow_special: bool) -> None:
    if not items:
        raise errors.InvalidParameter("MemberList is empty")
    if len({account for account, _ in items}) > MAX_ACCOUNTS_PER_CALL:
        raise errors.TooManyAccounts(
            f"MemberList names more than {MAX_ACCOUNTS_PER_CALL} accounts"
        )
    for account, marks in items:
        if not account:
            raise errors.InvalidParameter("Member_Account is empty")
        if not marks:
            raise errors.InvalidParameter(f"Marks of {account!r} is empty")
        for mark in marks:
            valid = mark >= MIN_CUSTOM_MARK or (allow_special and mark in SPECIAL_MARKS)
            if not valid:
                allowed = f">= {MIN_CUSTOM_MARK}" + (", 500 or 600" if allow_special else "")
                raise errors.InvalidParameter(f"mark {mark} of {account!r} must be {allowed}")


def _limit_error(exc: MarkLimitError) -> errors.TimError:
    if exc.kind == "distinct_marks":
        return errors.InvalidParameter(
            f"a group may use at most {MAX_DISTINCT_MARKS} distinct marks >= {MIN_CUSTOM_MARK}"
        )
    return errors.InvalidParameter(
        f"mark {exc.mark} may be held by at most {MAX_MEMBERS_PER_MARK} members"
    )


async def _announce(runtime: Runtime, app: App, group_id: str, operator: str,
                    command_type: int, result: MarkResult, now: float,
                    origin: Origin) -> MarkResult:
    if result.members:
        await runtime.events.emit(MarksChanged(
            app.sdkappid, group_id, operator, command_type,
            tuple((m.account, m.marks) for m in result.members), int(now * 1000), origin,
        ))
    # Mark 500 brings unconnected members online and takes them offline again. Offline
    # first: a lapsed 500 set again is in both lists, and its lapse came first.
    await _announce_offline(runtime, app, group_id, result.went_offline, now, origin)
    await runtime.online.announce(app.sdkappid, group_id, result.went_online, online=True,
                                  cause="Join", now=now, origin=origin)
    return result


async def _announce_offline(runtime: Runtime, app: App, group_id: str, accounts: list[str],
                            now: float, origin: Origin) -> None:
    """Accounts a mark call unlisted: 500 deleted, or lapsed and cleaned up by the call.

    Called for failing calls too: the store removes lapsed 500s before it finds out that
    the call fails, and nothing else will report those members. "Quit", as the sweep
    reports a lapse (OnlineService.report_offline).
    """
    await runtime.online.announce(app.sdkappid, group_id, accounts, online=False,
                                  cause="Quit", now=now, origin=origin)


async def modify_marks(runtime: Runtime, app: App, group_id: str, command_type: int,
                       items: Items, *, operator: str, now: float,
                       allow_special: bool, origin: Origin = REST) -> MarkResult:
    """Set (1) or delete (2) marks; FAILs when no named account is online."""
    if command_type not in (SET, DELETE):
        raise errors.InvalidParameter("CommandType must be 1 (set) or 2 (delete)")
    check_items(items, allow_special=allow_special)
    presence = runtime.presence
    try:
        if command_type == SET:
            always_online = [a for a, marks in items if MARK_ALWAYS_ONLINE in marks]
            profiles = await runtime.store.get_profiles(app.sdkappid, always_online)
            # An account that was never imported cannot be pinned online with 500.
            applicable = [(a, m) for a, m in items
                          if MARK_ALWAYS_ONLINE not in m or a in profiles]
            result = await presence.set_marks(
                app.sdkappid, group_id, applicable, now=now, profiles=profiles,
                mark500_ttl=runtime.settings.mark500_ttl,
            ) if applicable else MarkResult()
        else:
            result = await presence.delete_marks(app.sdkappid, group_id, items, now=now)
    except MarkLimitError as exc:
        await _announce_offline(runtime, app, group_id, exc.went_offline, now, origin)
        raise _limit_error(exc) from None
    except InvalidMarkError as exc:
        raise errors.InvalidParameter(str(exc)) from None
    if not result.members:
        await _announce_offline(runtime, app, group_id, result.went_offline, now, origin)
        raise errors.InvalidParameter(
            "none of the accounts is online in the group (offline or unknown accounts are "
            "left out; only mark 500 applies to offline accounts)"
        )
    return await _announce(runtime, app, group_id, operator, command_type, result, now,
                           origin)


async def add_robots(runtime: Runtime, app: App, group_id: str, accounts: Sequence[str], *,
                     operator: str, now: float, origin: Origin = REST) -> MarkResult:
    _check_robot_accounts(accounts)
    profiles = await runtime.store.get_profiles(app.sdkappid, accounts)
    missing = [a for a in dict.fromkeys(accounts) if a not in profiles]
    if missing:
        raise errors.InvalidParameter(
            f"robot accounts must be imported first; not imported: {', '.join(missing)}"
        )
    try:
        result = await runtime.presence.add_robots(
            app.sdkappid, group_id, accounts, now=now, profiles=profiles,
            ttl=runtime.settings.mark500_ttl,
        )
    except MarkLimitError as exc:
        await _announce_offline(runtime, app, group_id, exc.went_offline, now, origin)
        raise _limit_error(exc) from None
    return await _announce(runtime, app, group_id, operator, SET, result, now, origin)


async def del_robots(runtime: Runtime, app: App, group_id: str, accounts: Sequence[str], *,
                     operator: str, now: float, origin: Origin = REST) -> MarkResult:
    _check_robot_accounts(accounts)
    result = await runtime.presence.del_robots(app.sdkappid, group_id, accounts, now=now)
    return await _announce(runtime, app, group_id, operator, DELETE, result, now, origin)


def _check_robot_accounts(accounts: Sequence[str]) -> None:
    if not accounts or not all(accounts):
        raise errors.InvalidParameter("Member_Account must list at least one account")
    if len(set(accounts)) > MAX_ACCOUNTS_PER_CALL:
        raise errors.TooManyAccounts(
            f"Member_Account names more than {MAX_ACCOUNTS_PER_CALL} accounts"
        )
