"""``v4/group_open_http_svc``: groups, their members and their messages.

One module per concept, each with its commands' request shapes and handlers:
``groups.py`` (create_group, import_group, destroy_group, get_group_info,
get_appid_group_list), ``members.py`` (get_group_member_info, add_group_member,
delete_group_member, import_group_member, get_online_member_num) and ``messages.py``
(send_group_msg, import_group_msg, set_unread_msg_num); ``admin.py``
(modify_group_base_info, modify_group_member_info, change_group_owner,
get_joined_group_list, get_role_in_group) and ``attrs.py`` (the group attribute writes).
A handler decodes, calls the rules
of its command in ``domain/`` by name (``domain/groups.py``, ``domain/members.py``,
``domain/messages.py``) and builds the reply. docs/architecture.md has the layer picture.

add/delete_group_member and destroy_group emit on the event bus (they notify); the import
commands (import_group, import_group_member, import_group_msg) and set_unread_msg_num never
do.
"""

from __future__ import annotations

# Importing the modules registers their commands with the service.
from opentim.services.group_open_http_svc import (
    admin,
    attrs,
    groups,
    history,
    members,
    messages,
    moderation,
)
from opentim.services.group_open_http_svc.common import SERVICE

__all__ = ["SERVICE", "admin", "attrs", "groups", "history", "members", "messages",
           "moderation"]
