"""Moderation: forbid_send_msg, get_group_muted_account (get_group_shutted_uin),
ban_group_member, unban_group_member, get_group_ban_member.

The rules are in ``domain/moderation.py``; the sender check every send runs is
``messaging/moderation.check_sender``. A banned AVChatRoom member is taken out of the
room at once (its connections, on every process, leave the online list: a
``MembersExited`` "Kicked", which the gateway turns into a removal) and the gateway
refuses its joins until the ban ends (``online.OnlineService.join``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from opentim.domain import moderation as rules
from opentim.events import MembersExited
from opentim.protocol.dispatch import command
from opentim.protocol.fields import NonNegInt64, UInt32
from opentim.runtime import Context
from opentim.services.group_open_http_svc.common import SERVICE, event_time_ms, load_group

# --- mutes -------------------------------------------------------------------------------


class ForbidSendMsg(msgspec.Struct):
    GroupId: str
    Members_Account: list[str]
    MuteTime: UInt32  # seconds; 0 unmutes; 4294967295 for ever (old name ShutUpTime)
    TopicId: str | None = None


@command(SERVICE, "forbid_send_msg", ForbidSendMsg, legacy_fields=(("ShutUpTime", "MuteTime"),))
async def forbid_send_msg(ctx: Context, req: ForbidSendMsg) -> None:
    rules.check_no_topic(req.TopicId)
    accounts = rules.check_accounts(req.Members_Account, rules.MUTE_MEMBERS_MAX)
    group = await load_group(ctx, req.GroupId)
    rules.check_mute_target(group)
    await ctx.store.moderation.mute(ctx.sdkappid, group.group_id, accounts,
                                    rules.until(req.MuteTime, ctx.now_s), now=ctx.now_s)


class GetGroupMutedAccount(msgspec.Struct):
    GroupId: str
    TopicId: str | None = None


async def _muted(ctx: Context, req: GetGroupMutedAccount) -> tuple[str, list[tuple[str, int]]]:
    rules.check_no_topic(req.TopicId)
    group = await load_group(ctx, req.GroupId)
    return group.group_id, await ctx.store.moderation.muted(ctx.sdkappid, group.group_id,
                                                            now=ctx.now_s)


@command(SERVICE, "get_group_muted_account", GetGroupMutedAccount)
async def get_group_muted_account(ctx: Context, req: GetGroupMutedAccount) -> dict[str, Any]:
    group_id, muted = await _muted(ctx, req)
    return {"GroupId": group_id,
            "MutedAccountList": [{"Member_Account": a, "MutedUntil": t} for a, t in muted]}


@command(SERVICE, "get_group_shutted_uin", GetGroupMutedAccount)
async def get_group_shutted_uin(ctx: Context, req: GetGroupMutedAccount) -> dict[str, Any]:
    """The old name of get_group_muted_account, answering with the old field names."""
    group_id, muted = await _muted(ctx, req)
    return {"GroupId": group_id,
            "ShuttedUinList": [{"Member_Account": a, "ShuttedUntil": t} for a, t in muted]}


# --- bans (AVChatRoom) -------------------------------------------------------------------


class BanGroupMember(msgspec.Struct):
    GroupId: str
    Members_Account: list[str]
    Duration: UInt32
    Description: str = ""


@command(SERVICE, "ban_group_member", BanGroupMember)
async def ban_group_member(ctx: Context, req: BanGroupMember) -> None:
    rules.check_ban(req.Duration, req.Description)
    accounts = rules.check_accounts(req.Members_Account, rules.BAN_MEMBERS_MAX)
    group = await load_group(ctx, req.GroupId)
    rules.check_ban_target(group)
    await ctx.store.moderation.ban(ctx.sdkappid, group.group_id, accounts,
                                   rules.until(req.Duration, ctx.now_s), req.Description)
    ctx.runtime.online.bans.forget(ctx.sdkappid, group.group_id)
    # Out of the room at once, on every process (the gateway's removal of "Kicked"
    # members); the joins they try next are refused until the ban ends.
    await ctx.runtime.events.emit(MembersExited(
        ctx.sdkappid, group.group_id, group.type.value, ctx.identifier, tuple(accounts),
        "Kicked", event_time_ms(ctx), ctx.origin,
    ))


class UnbanGroupMember(msgspec.Struct):
    GroupId: str
    Members_Account: list[str]


@command(SERVICE, "unban_group_member", UnbanGroupMember)
async def unban_group_member(ctx: Context, req: UnbanGroupMember) -> None:
    accounts = rules.check_accounts(req.Members_Account, rules.BAN_MEMBERS_MAX)
    group = await load_group(ctx, req.GroupId)
    rules.check_ban_target(group)
    await ctx.store.moderation.unban(ctx.sdkappid, group.group_id, accounts, now=ctx.now_s)
    ctx.runtime.online.bans.forget(ctx.sdkappid, group.group_id)


class GetGroupBanMember(msgspec.Struct):
    GroupId: str
    Limit: NonNegInt64 = rules.BAN_PAGE_MAX
    Offset: NonNegInt64 = 0


@command(SERVICE, "get_group_ban_member", GetGroupBanMember)
async def get_group_ban_member(ctx: Context, req: GetGroupBanMember) -> dict[str, Any]:
    rules.check_ban_page(req.Limit, req.Offset)
    group = await load_group(ctx, req.GroupId)
    rules.check_ban_target(group)
    # One more than asked: whether another page follows.
    page = await ctx.store.moderation.banned_page(ctx.sdkappid, group.group_id,
                                                  now=ctx.now_s, limit=req.Limit + 1,
                                                  offset=req.Offset)
    more = len(page) > req.Limit
    return {"BannedAccountList": [{"Member_Account": a, "BannedUntil": t}
                                  for a, t in page[:req.Limit]],
            "NextOffset": rules.next_offset(req.Offset, len(page), req.Limit, more)}
