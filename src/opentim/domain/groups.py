"""Group rules: types, IDs, field limits and member caps (protocol.md §4)."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from enum import StrEnum

from opentim import errors
from opentim.domain.apps import Edition


class GroupType(StrEnum):
    PRIVATE = "Private"
    PUBLIC = "Public"
    CHATROOM = "ChatRoom"
    AVCHATROOM = "AVChatRoom"
    COMMUNITY = "Community"


_TYPE_ALIASES = {"Work": GroupType.PRIVATE, "Meeting": GroupType.CHATROOM}


def parse_group_type(value: str) -> GroupType:
    try:
        return _TYPE_ALIASES.get(value) or GroupType(value)
    except ValueError:
        raise errors.InvalidParameter(
            f"Type {errors.shown(value)} is not one of Private, Public, ChatRoom, AVChatRoom, "
            "Community (Work and Meeting are accepted as aliases)"
        ) from None


class Role(StrEnum):
    OWNER = "Owner"
    ADMIN = "Admin"
    MEMBER = "Member"


AUTO_ID_PREFIX = "@TGS#"
COMMUNITY_ID_PREFIX = "@TGS#_"
MAX_GROUP_ID_BYTES = 48
# Generated IDs carry a per-type letter after the prefix, as Tencent's samples do.
_TYPE_ID_LETTER = {
    GroupType.PRIVATE: "1",
    GroupType.PUBLIC: "2",
    GroupType.CHATROOM: "3",
    GroupType.AVCHATROOM: "a",
    GroupType.COMMUNITY: "c",
}
_ID_ALPHABET = string.ascii_uppercase + string.digits


def generate_group_id(group_type: GroupType) -> str:
    body = _TYPE_ID_LETTER[group_type] + "".join(secrets.choice(_ID_ALPHABET) for _ in range(9))
    if group_type is GroupType.COMMUNITY:
        return COMMUNITY_ID_PREFIX + AUTO_ID_PREFIX + body
    return AUTO_ID_PREFIX + body


def is_well_formed_group_id(group_id: str) -> bool:
    """Printable ASCII, 1..48 bytes: anything else can never name a group (10015)."""
    return (
        0 < len(group_id) <= MAX_GROUP_ID_BYTES
        and group_id.isascii()
        and group_id.isprintable()
    )


def check_group_id(group_id: str) -> str:
    if not is_well_formed_group_id(group_id):
        raise errors.InvalidGroupId(
            f"GroupId {errors.shown(group_id)} is invalid: it must be 1 to "
            f"{MAX_GROUP_ID_BYTES} bytes of printable ASCII"
        )
    return group_id


def check_custom_group_id(group_id: str, group_type: GroupType) -> str:
    check_group_id(group_id)
    if group_type is GroupType.COMMUNITY:
        if not group_id.startswith(COMMUNITY_ID_PREFIX) or group_id == COMMUNITY_ID_PREFIX:
            raise errors.InvalidGroupId(
                f"a Community group's custom GroupId must start with {COMMUNITY_ID_PREFIX!r}"
            )
    elif group_id.startswith(AUTO_ID_PREFIX):
        raise errors.InvalidGroupId(
            f"a custom GroupId must not start with {AUTO_ID_PREFIX!r}, which is reserved for "
            "generated IDs"
        )
    return group_id


# Field limits in bytes of UTF-8 (protocol.md §4).
NAME_MAX = 30
INTRODUCTION_MAX = 240
NOTIFICATION_MAX = 300
FACE_URL_MAX = 100
NAME_CARD_MAX = 50
APP_DEFINED_KEYS_MAX = 10
APP_DEFINED_KEY_MAX = 16
APP_DEFINED_VALUE_MAX = 512
CREATE_MEMBER_LIST_MAX = 100


def check_text(name: str, value: str, limit: int) -> str:
    if len(value.encode()) > limit:
        raise errors.InvalidParameter(f"{name} exceeds {limit} bytes")
    return value


def member_cap(group_type: GroupType, edition: Edition) -> int | None:
    """The most members a group may hold; None for AVChatRoom (unlimited)."""
    if group_type is GroupType.AVCHATROOM:
        return None
    if group_type is GroupType.COMMUNITY:
        return 1_000_000 if edition is Edition.PREMIUM else 100_000
    return 6000 if edition is Edition.PREMIUM else 500


class JoinOption(StrEnum):
    FREE_ACCESS = "FreeAccess"
    NEED_PERMISSION = "NeedPermission"
    DISABLE_APPLY = "DisableApply"


class InviteOption(StrEnum):
    FREE_ACCESS = "FreeAccess"
    NEED_PERMISSION = "NeedPermission"
    DISABLE_INVITE = "DisableInvite"


@dataclass(slots=True)
class Group:
    sdkappid: int
    group_id: str
    type: GroupType
    name: str
    owner: str | None
    create_time: int
    max_member_num: int | None
    introduction: str = ""
    notification: str = ""
    face_url: str = ""
    apply_join_option: str = JoinOption.NEED_PERMISSION.value
    invite_join_option: str = InviteOption.FREE_ACCESS.value
    app_defined_data: dict[str, str] = field(default_factory=dict)
    info_seq: int = 1
    last_info_time: int = 0
    last_msg_time: int = 0
    next_msg_seq: int = 1
    member_num: int = 0
    shut_up_all: bool = False
    support_topic: bool = False


@dataclass(slots=True)
class Member:
    account: str
    role: Role = Role.MEMBER
    join_time: int = 0
    msg_seq: int = 0
    msg_flag: str = "AcceptAndNotify"
    last_send_msg_time: int = 0
    shut_up_until: int = 0
    name_card: str = ""
    unread_msg_num: int = 0
    app_member_defined_data: dict[str, str] = field(default_factory=dict)


class MemberResult:
    """Per-member Result values of add_group_member and import_group_member."""

    FAILED = 0
    ADDED = 1
    ALREADY_MEMBER = 2
