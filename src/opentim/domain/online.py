"""Rules of the online member list of live groups (who is listed, which types have one).

"Online" in a group: a member holds at least one connection to it, or a still-valid
mark 500 (see ``domain.marks``). Pure functions of their inputs; the I/O around them is
in ``opentim.online``.
"""

from __future__ import annotations

from opentim import errors
from opentim.domain.apps import App
from opentim.domain.groups import GroupType

# Types whose members are listed while online: AVChatRoom (any imported account may join)
# and Community (members only). The other types have no online list (10007).
ONLINE_LIST_TYPES = (GroupType.AVCHATROOM, GroupType.COMMUNITY)
# Marks, robots and get_online_member_num exist for AVChatRoom only.
MARK_TYPES = (GroupType.AVCHATROOM,)

# An account back online this soon (seconds, inclusive) after a heartbeat interruption
# took it offline has "recovered" (the webhook's HeartbeatRecover), not joined afresh.
RECOVER_WINDOW = 120.0

# get_members with the Premium online-list feature: pages of 500, at most 1000 members
# over one paging sequence. Without it: the newest 30 on one page.
PAGE_SIZE = 500
LIST_CAP = 1000
BASIC_LIST_SIZE = 30


def check_online_list_type(group_id: str, group_type: GroupType | None,
                           allowed: tuple[GroupType, ...] = ONLINE_LIST_TYPES) -> GroupType:
    """``group_type``: the group's type, None if it does not exist."""
    if group_type is None:
        raise errors.GroupNotFound(group_id=group_id)
    if group_type not in allowed:
        raise errors.NoPermission(
            f"{group_type} groups have no online member list: only "
            f"{' and '.join(t.value for t in allowed)} groups do"
        )
    return group_type


def needs_membership(group_type: GroupType) -> bool:
    """Only a Community's members may join its online list; anyone imported, an AV's."""
    return group_type is GroupType.COMMUNITY


def not_a_member_error(account: str, group_id: str) -> errors.TimError:
    return errors.NoPermission(f"{account!r} is not a member of Community group {group_id!r}")


def page_request(has_online_member_list: bool, timestamp: int) -> tuple[int, int, int]:
    """``(cursor, limit, cap)`` of a get_members call with this Timestamp: the Premium
    feature pages from the cursor; without it, the first page only, of 30."""
    if has_online_member_list:
        return timestamp, PAGE_SIZE, LIST_CAP
    return 0, BASIC_LIST_SIZE, BASIC_LIST_SIZE


def member_state_cause(node_lost: bool) -> str:
    """How a member a sweep took offline is reported: a dead process's users as heartbeat
    interruptions (coming back within RECOVER_WINDOW is HeartbeatRecover), a lapsed mark
    500 as Quit."""
    return "HeartbeatInterrupt" if node_lost else "Quit"


def check_online_list_feature(app: App) -> None:
    """Marks and robots need the Premium edition with the online member list switched on
    (get_members without it answers the basic list: ``page_request``)."""
    missing = app.missing_online_list_feature()
    if missing:
        raise errors.NoPermission(missing)
