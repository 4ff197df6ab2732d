"""``v4/group_open_avchatroom_http_svc``: the live-streaming group's online list and marks."""

from __future__ import annotations

from opentim import errors
from opentim.protocol.dispatch import service

SERVICE = service(
    "group_open_avchatroom_http_svc",
    invalid_parameter=errors.InvalidParameter,
    internal_error=errors.GroupInternalError,
    unknown_command=errors.InvalidCommand,
)
