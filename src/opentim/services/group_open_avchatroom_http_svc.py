"""``v4/group_open_avchatroom_http_svc``: the live-streaming group's online list and marks.

get_members answers from the presence store alone: rows are pre-encoded JSON spliced into
the reply, so a 500-member page costs no SQL and no per-member decoding.
"""

from __future__ import annotations

from typing import Any

import msgspec

from opentim import errors, marks
from opentim.online import require_online_list_group
from opentim.presence.base import MARK_ALWAYS_ONLINE, MARK_HIDDEN, MIN_CUSTOM_MARK
from opentim.presence.errors import InvalidCursorError
from opentim.protocol.dispatch import command, service
from opentim.protocol.fields import Int64, NonNegInt64, UInt32
from opentim.runtime import Context

SERVICE = service(
    "group_open_avchatroom_http_svc",
    invalid_parameter=errors.InvalidParameter,
    internal_error=errors.GroupInternalError,
    unknown_command=errors.InvalidCommand,
)

PAGE_SIZE = 500
LIST_CAP = 1000
# Apps without the Premium online-list feature get the newest 30 on one page (seed 001).
BASIC_LIST_SIZE = 30


def check_mark(mark: int) -> int:
    if mark in (MARK_ALWAYS_ONLINE, MARK_HIDDEN) or mark >= MIN_CUSTOM_MARK:
        return mark
    raise errors.InvalidParameter(
        f"mark {mark} is invalid: marks are >= {MIN_CUSTOM_MARK}, or the special marks "
        f"{MARK_ALWAYS_ONLINE} and {MARK_HIDDEN}"
    )


class GetMembers(msgspec.Struct):
    GroupId: str
    Timestamp: NonNegInt64
    Mark: UInt32 | None = None


@command(SERVICE, "get_members", GetMembers)
async def get_members(ctx: Context, req: GetMembers) -> dict[str, Any]:
    runtime = ctx.runtime
    await require_online_list_group(runtime.group_types, ctx.sdkappid, req.GroupId)
    mark = None if req.Mark is None else check_mark(req.Mark)
    if ctx.app.has_online_member_list:
        cursor, limit, cap = req.Timestamp, PAGE_SIZE, LIST_CAP
    else:
        cursor, limit, cap = 0, BASIC_LIST_SIZE, BASIC_LIST_SIZE
    try:
        page = await runtime.presence.page(ctx.sdkappid, req.GroupId, cursor=cursor, mark=mark,
                                           limit=limit, cap=cap, now=ctx.now)
    except InvalidCursorError:
        raise errors.InvalidParameter(
            f"Timestamp {req.Timestamp} is not a NextTimestamp this server returned"
        ) from None
    return {"MemberList": msgspec.Raw(page.rows), "NextTimestamp": page.next_cursor}


class MemberMarks(msgspec.Struct):
    Member_Account: str
    Marks: list[UInt32]


class ModifyUserInfo(msgspec.Struct):
    GroupId: str
    CommandType: Int64
    MemberList: list[MemberMarks]


@command(SERVICE, "modify_user_info", ModifyUserInfo)
async def modify_user_info(ctx: Context, req: ModifyUserInfo) -> dict[str, Any]:
    await marks.require_av_group(ctx.runtime, ctx.sdkappid, req.GroupId)
    marks.require_online_list_feature(ctx.app)
    result = await marks.modify_marks(
        ctx.runtime, ctx.app, req.GroupId, req.CommandType,
        [(m.Member_Account, m.Marks) for m in req.MemberList],
        operator=ctx.identifier, now=ctx.now, allow_special=True, origin=ctx.origin,
    )
    return {
        "CommandType": req.CommandType,
        "MemberList": [{"Member_Account": m.account, "Marks": list(m.marks)}
                       for m in result.members],
    }


class Robots(msgspec.Struct):
    GroupId: str
    Member_Account: list[str]


@command(SERVICE, "add_robots", Robots)
async def add_robots(ctx: Context, req: Robots) -> None:
    await marks.require_av_group(ctx.runtime, ctx.sdkappid, req.GroupId)
    marks.require_online_list_feature(ctx.app)
    await marks.add_robots(ctx.runtime, ctx.app, req.GroupId, req.Member_Account,
                           operator=ctx.identifier, now=ctx.now, origin=ctx.origin)


@command(SERVICE, "del_robots", Robots)
async def del_robots(ctx: Context, req: Robots) -> None:
    await marks.require_av_group(ctx.runtime, ctx.sdkappid, req.GroupId)
    marks.require_online_list_feature(ctx.app)
    await marks.del_robots(ctx.runtime, ctx.app, req.GroupId, req.Member_Account,
                           operator=ctx.identifier, now=ctx.now, origin=ctx.origin)
