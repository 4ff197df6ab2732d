"""What the group_open_http_svc modules share: the service, loading a group, member rows."""

from __future__ import annotations

from typing import Any

from opentim import errors, online
from opentim.domain.groups import Group, Member
from opentim.protocol.dispatch import service
from opentim.runtime import Context

SERVICE = service(
    "group_open_http_svc",
    invalid_parameter=errors.InvalidParameter,
    internal_error=errors.GroupInternalError,
    unknown_command=errors.InvalidCommand,
)


async def load_group(ctx: Context, group_id: str) -> Group:
    """The group, or 10015 for an ID that cannot exist and 10010 for one that does not."""
    return await online.load_group(ctx.store, ctx.sdkappid, group_id)


def event_time_ms(ctx: Context) -> int:
    return int(ctx.now * 1000)


def member_row(member: Member, fields: tuple[str, ...] | list[str],
               data_keys: list[str] | None) -> dict[str, Any]:
    """A MemberList entry of get_group_info and get_group_member_info: the asked fields."""
    values = {
        "Role": member.role.value,
        "JoinTime": member.join_time,
        "MsgSeq": member.msg_seq,
        "MsgFlag": member.msg_flag,
        "LastSendMsgTime": member.last_send_msg_time,
        "ShutUpUntil": member.shut_up_until,
        "NameCard": member.name_card,
        "UnreadMsgNum": member.unread_msg_num,
    }
    row: dict[str, Any] = {"Member_Account": member.account}
    row.update((f, values[f]) for f in fields if f in values)
    data = member.app_member_defined_data
    if data_keys is not None:
        data = {k: v for k, v in data.items() if k in data_keys}
    row["AppMemberDefinedData"] = [{"Key": k, "Value": v} for k, v in data.items()]
    return row
