"""``v4/openim``: one-to-one messages (``messages.py``).

sendmsg, batchsendmsg, importmsg, admin_getroammsg, admin_msgwithdraw,
admin_set_msg_read and get_c2c_unread_msg_num, and the gateway's send_c2c_msg. The rules
are in ``domain/c2c.py``; sending, delivery and callbacks in ``messaging/c2c.py``; SQL in
``storage/c2c.py``. Codes: Tencent's openim codes (90001 for a body that does not fit the
command's shape, 91000 for an internal error); an unknown command is 60009, as for
services OpenTIM lacks.
"""

from __future__ import annotations

from opentim import errors
from opentim.protocol.dispatch import service

SERVICE = service(
    "openim",
    invalid_parameter=errors.OpenimInvalidRequest,
    internal_error=errors.OpenimInternalError,
    unknown_command=errors.ResourceUrlInvalid,
)

# Importing the modules registers their commands (after SERVICE, which they use).
from opentim.services.openim import messages, online_status  # noqa: E402

__all__ = ["SERVICE", "messages", "online_status"]
