"""``v4/group_open_attr_http_svc``: get_group_attr, the one group attribute command Tencent
serves from this service (the writes are in group_open_http_svc:
``services/group_open_http_svc/attrs.py``, which this reads through)."""

from __future__ import annotations

from typing import Any

import msgspec

from opentim import errors
from opentim.protocol.dispatch import command, service
from opentim.runtime import Context
from opentim.services.group_open_http_svc.attrs import group_attrs

SERVICE = service(
    "group_open_attr_http_svc",
    invalid_parameter=errors.InvalidParameter,
    internal_error=errors.GroupInternalError,
    unknown_command=errors.InvalidCommand,
)


class GetGroupAttr(msgspec.Struct):
    GroupId: str


@command(SERVICE, "get_group_attr", GetGroupAttr)
async def get_group_attr(ctx: Context, req: GetGroupAttr) -> dict[str, Any]:
    return await group_attrs(ctx, req.GroupId)
