"""Group rules: types, IDs, field limits, member caps, and how a group is created.

Pure functions of their inputs (and ``now``); the group_open_http_svc handlers call them
by name (``services/group_open_http_svc/groups.py``). Member rules are in
``domain/members.py``, message rules in ``domain/messages.py``.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

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


# Field limits in bytes of UTF-8 (Tencent's create_group page,
# cloud.tencent.com/document/product/269/1615).
NAME_MAX = 30
INTRODUCTION_MAX = 240
NOTIFICATION_MAX = 300
FACE_URL_MAX = 100
NAME_CARD_MAX = 50
APP_DEFINED_KEYS_MAX = 10
APP_DEFINED_KEY_MAX = 16
APP_DEFINED_VALUE_MAX = 512
CREATE_MEMBER_LIST_MAX = 100
GROUP_INFO_MAX = 50  # get_group_info GroupIdList
GROUP_LIST_LIMIT_MAX = 10000  # get_appid_group_list Limit


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


# --- create_group / import_group -------------------------------------------------------
# The request fields the rules read, as Protocols: the handlers' msgspec request types
# match them as they are, so nothing is copied on the way in.


class KeyValueFields(Protocol):
    @property
    def Key(self) -> str: ...
    @property
    def Value(self) -> str: ...


class InitialMemberFields(Protocol):
    @property
    def Member_Account(self) -> str: ...
    @property
    def Role(self) -> str | None: ...
    @property
    def AppMemberDefinedData(self) -> Sequence[KeyValueFields]: ...


class NewGroupFields(Protocol):
    """What create_group and import_group send (import_group adds CreateTime)."""

    @property
    def Type(self) -> str: ...
    @property
    def Name(self) -> str: ...
    @property
    def Owner_Account(self) -> str | None: ...
    @property
    def GroupId(self) -> str | None: ...
    @property
    def Introduction(self) -> str: ...
    @property
    def Notification(self) -> str: ...
    @property
    def FaceUrl(self) -> str: ...
    @property
    def MaxMemberCount(self) -> int | None: ...
    @property
    def ApplyJoinOption(self) -> str | None: ...
    @property
    def InviteJoinOption(self) -> str | None: ...
    @property
    def AppDefinedData(self) -> Sequence[KeyValueFields]: ...
    @property
    def MemberList(self) -> Sequence[InitialMemberFields]: ...
    @property
    def SupportTopic(self) -> int: ...


def app_defined_data(items: Sequence[KeyValueFields]) -> dict[str, str]:
    """At most 10 keys of 16 bytes with values of 512 bytes (groups and members alike)."""
    if len(items) > APP_DEFINED_KEYS_MAX:
        raise errors.InvalidParameter(f"AppDefinedData has more than {APP_DEFINED_KEYS_MAX} keys")
    data: dict[str, str] = {}
    for item in items:
        check_text("AppDefinedData Key", item.Key, APP_DEFINED_KEY_MAX)
        check_text("AppDefinedData Value", item.Value, APP_DEFINED_VALUE_MAX)
        data[item.Key] = item.Value
    return data


def _option(value: str | None, allowed: type[StrEnum], default: str, name: str) -> str:
    if value is None:
        return default
    if value not in {o.value for o in allowed}:
        raise errors.InvalidParameter(
            f"{name} must be one of {', '.join(o.value for o in allowed)}"
        )
    return value


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """A create request that passed the checks needing no I/O (:func:`plan_group`)."""

    type: GroupType
    group_id: str
    max_members: int | None
    create_time: int
    members: list[Member]  # the owner first, then MemberList in order

    @property
    def accounts(self) -> list[str]:
        """The accounts that must exist before the group can be created."""
        return [m.account for m in self.members]

    @property
    def roster(self) -> list[Member]:
        """The members stored with the group: none for an AVChatRoom, whose members are
        live sessions (its owner, if any, is named but not a member)."""
        return [] if self.type is GroupType.AVCHATROOM else self.members


def plan_group(req: NewGroupFields, edition: Edition, create_time: int) -> GroupPlan:
    """The checks of create_group/import_group that come before the accounts are looked up:
    type, field sizes, what the type allows, MemberList size, MaxMemberCount, GroupId and
    the initial members' roles."""
    group_type = parse_group_type(req.Type)
    if not req.Name:
        raise errors.InvalidParameter("Name is required")
    check_text("Name", req.Name, NAME_MAX)
    check_text("Introduction", req.Introduction, INTRODUCTION_MAX)
    check_text("Notification", req.Notification, NOTIFICATION_MAX)
    check_text("FaceUrl", req.FaceUrl, FACE_URL_MAX)
    if group_type is GroupType.AVCHATROOM and req.MemberList:
        raise errors.NoPermission(
            "an AVChatRoom cannot be created with a MemberList: members join through clients"
        )
    if len(req.MemberList) > CREATE_MEMBER_LIST_MAX:
        raise errors.TooManyAccounts(f"MemberList has more than {CREATE_MEMBER_LIST_MAX} members")
    cap = member_cap(group_type, edition)
    max_members = cap
    if req.MaxMemberCount is not None and cap is not None:
        if not 0 < req.MaxMemberCount <= cap:
            raise errors.InvalidParameter(
                f"MaxMemberCount must be between 1 and {cap} for a {group_type} group"
            )
        max_members = req.MaxMemberCount
    group_id = (
        check_custom_group_id(req.GroupId, group_type) if req.GroupId
        else generate_group_id(group_type)
    )
    return GroupPlan(group_type, group_id, max_members, create_time,
                     initial_members(req, create_time))


def initial_members(req: NewGroupFields, join_time: int) -> list[Member]:
    """The owner first, then the MemberList in order (a repeated account counts once)."""
    members: dict[str, Member] = {}
    if req.Owner_Account:
        members[req.Owner_Account] = Member(req.Owner_Account, Role.OWNER, join_time)
    for item in req.MemberList:
        role = Role.MEMBER if item.Role is None else item.Role
        if role not in (Role.ADMIN, Role.MEMBER):
            raise errors.InvalidParameter(
                f"Role {errors.shown(role)} of {errors.shown(item.Member_Account)} "
                "must be Admin or Member"
            )
        if item.Member_Account and item.Member_Account not in members:
            members[item.Member_Account] = Member(
                item.Member_Account, Role(role), join_time,
                app_member_defined_data=app_defined_data(item.AppMemberDefinedData),
            )
    return list(members.values())


def new_group(req: NewGroupFields, plan: GroupPlan, *, sdkappid: int,
              known: Container[str]) -> Group:
    """The group to store, once ``known`` tells which of ``plan.accounts`` exist: 10019 for
    the missing ones, then the member cap and the options."""
    missing = [a for a in plan.accounts if a not in known]
    if missing:
        raise errors.AccountNotFound(accounts=missing)
    if len(plan.members) > (plan.max_members or len(plan.members)):
        raise errors.GroupFull(f"MemberList exceeds the group's {plan.max_members} members")
    is_av = plan.type is GroupType.AVCHATROOM
    return Group(
        sdkappid=sdkappid,
        group_id=plan.group_id,
        type=plan.type,
        name=req.Name,
        owner=req.Owner_Account or None,
        create_time=plan.create_time,
        max_member_num=plan.max_members,
        introduction=req.Introduction,
        notification=req.Notification,
        face_url=req.FaceUrl,
        # An AVChatRoom is joined freely unless asked otherwise; other types need approval.
        apply_join_option=_option(
            req.ApplyJoinOption, JoinOption,
            JoinOption.FREE_ACCESS if is_av else JoinOption.NEED_PERMISSION,
            "ApplyJoinOption",
        ),
        invite_join_option=_option(
            req.InviteJoinOption, InviteOption, InviteOption.FREE_ACCESS, "InviteJoinOption",
        ),
        app_defined_data=app_defined_data(req.AppDefinedData),
        last_info_time=plan.create_time,
        support_topic=bool(req.SupportTopic) and plan.type is GroupType.COMMUNITY,
    )


def owns_taken_id(existing: Group | None, owner: str | None) -> bool:
    """Whether a custom GroupId that is taken is taken by the requester's own group, which
    Tencent answers with 10025 rather than 10021."""
    return existing is not None and bool(existing.owner) and existing.owner == owner


def import_create_time(group_type: GroupType, create_time: int | None, now: int) -> int:
    """import_group's CreateTime (now when left out): a past Unix time, never for an
    AVChatRoom, which keeps no history to import."""
    if group_type is GroupType.AVCHATROOM:
        raise errors.NoPermission("import_group does not apply to AVChatRoom groups")
    created = now if create_time is None else create_time
    if not 0 < created <= now:
        raise errors.InvalidParameter("CreateTime must be a past Unix time in seconds")
    return created


# --- get_group_info / get_appid_group_list --------------------------------------------


def check_group_id_list(group_ids: Sequence[str]) -> None:
    if not group_ids:
        raise errors.InvalidParameter("GroupIdList is empty")
    if len(group_ids) > GROUP_INFO_MAX:
        raise errors.TooManyAccounts(f"GroupIdList has more than {GROUP_INFO_MAX} groups")


def check_group_list_limit(limit: int) -> None:
    if not 0 < limit <= GROUP_LIST_LIMIT_MAX:
        raise errors.InvalidParameter(f"Limit must be between 1 and {GROUP_LIST_LIMIT_MAX}")
