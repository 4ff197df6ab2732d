"""``v4/group_open_avchatroom_http_svc``: the live-streaming group's online list and marks.

get_members answers from the presence store alone: rows are pre-encoded JSON spliced into
the reply, so a 500-member page costs no SQL and no per-member decoding.
"""

from __future__ import annotations

from typing import Any

import msgspec

from opentim import errors
from opentim.domain.marks import check_mark
from opentim.domain.online import page_request
from opentim.online import require_online_list_group
from opentim.presence import InvalidCursorError
from opentim.protocol.dispatch import command, service
from opentim.protocol.fields import Int64, NonNegInt64, UInt32
from opentim.runtime import Context

SERVICE = service(
    "group_open_avchatroom_http_svc",
    invalid_parameter=errors.InvalidParameter,
    internal_error=errors.GroupInternalError,
    unknown_command=errors.InvalidCommand,
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
    cursor, limit, cap = page_request(ctx.app.has_online_member_list, req.Timestamp)
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
    result = await ctx.runtime.marks.modify_marks(
        ctx.app, req.GroupId, req.CommandType,
        [(m.Member_Account, m.Marks) for m in req.MemberList],
        operator=ctx.identifier, now=ctx.now, origin=ctx.origin,
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
    await ctx.runtime.marks.add_robots(ctx.app, req.GroupId, req.Member_Account,
                                       operator=ctx.identifier, now=ctx.now, origin=ctx.origin)


@command(SERVICE, "del_robots", Robots)
async def del_robots(ctx: Context, req: Robots) -> None:
    await ctx.runtime.marks.del_robots(ctx.app, req.GroupId, req.Member_Account,
                                       operator=ctx.identifier, now=ctx.now, origin=ctx.origin)
