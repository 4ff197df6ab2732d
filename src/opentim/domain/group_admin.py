"""Group administration rules: what modify_group_base_info, modify_group_member_info,
change_group_owner, get_joined_group_list, get_role_in_group and the group attribute
commands may change, with Tencent's limits and codes.

Pure functions of their inputs; the handlers in ``services/group_open_http_svc/admin.py``
and ``attrs.py`` call them by name, and the stores call the ``apply`` functions inside
their transactions (the group row locked), so a limit on the stored whole (attribute count
and size, custom-field count, MaxMemberNum against MemberNum) is checked atomically.
Tencent's pages: modify_group_base_info (cloud.tencent.com/document/product/269/1620),
modify_group_member_info (1623), get_joined_group_list (1625), get_role_in_group (1626),
change_group_owner (1633), group attributes (67009 - 67012, delete 104440). Where Tencent
is silent the decision is written here and in docs/rest-commands.md.

The caller of these REST commands is always an App admin, who may do everything a group
owner may; the rules are about what can be changed: the owner's role only through
change_group_owner, no roster in an AVChatRoom, no admins in a Work (Private) group
(Tencent's default), no mutes in a Work group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentim import errors
from opentim.domain import groups as group_rules
from opentim.domain.apps import Edition
from opentim.domain.groups import (
    Group,
    GroupType,
    InviteOption,
    JoinOption,
    KeyValueFields,
    Member,
    Role,
    check_text,
)
from opentim.domain.members import MEMBER_FIELDS

# --- modify_group_base_info --------------------------------------------------------------

MUTE_ALL_VALUES = ("On", "Off")
# The fields whose change Group.CallbackAfterGroupInfoChanged reports (Tencent: name,
# introduction, notification and face URL; other changes call no callback).
CALLBACK_INFO_FIELDS = ("Name", "Introduction", "Notification", "FaceUrl")


class BaseInfoFields(Protocol):
    @property
    def Name(self) -> str | None: ...
    @property
    def Introduction(self) -> str | None: ...
    @property
    def Notification(self) -> str | None: ...
    @property
    def FaceUrl(self) -> str | None: ...
    @property
    def MaxMemberNum(self) -> int | None: ...
    @property
    def ApplyJoinOption(self) -> str | None: ...
    @property
    def InviteJoinOption(self) -> str | None: ...
    @property
    def MuteAllMember(self) -> str | None: ...
    @property
    def AppDefinedData(self) -> Sequence[KeyValueFields] | None: ...


@dataclass(frozen=True, slots=True)
class InfoChange:
    """What a modify_group_base_info request changes, checked without the stored group."""

    columns: dict[str, Any]  # groups columns to set (app_defined_data merged later)
    fields: dict[str, Any]  # the same changes by Tencent field name (pushes, callbacks)
    data: dict[str, str] = field(default_factory=dict)  # AppDefinedData: "" deletes a key
    max_member_num: int | None = None

    @property
    def empty(self) -> bool:
        return not self.columns and not self.data and self.max_member_num is None


def _option(value: str, allowed: type[JoinOption] | type[InviteOption], name: str) -> str:
    if value not in {o.value for o in allowed}:
        raise errors.InvalidParameter(
            f"{name} must be one of {', '.join(o.value for o in allowed)}")
    return value


def plan_info_change(group_type: GroupType, req: BaseInfoFields,
                     edition: Edition) -> InfoChange:
    """modify_group_base_info's checks that need no stored state: byte limits (the same as
    create_group's), option values, and what the group's type allows."""
    columns: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    if req.Name is not None:
        if not req.Name:
            raise errors.InvalidParameter("Name must not be empty")
        columns["name"] = fields["Name"] = check_text("Name", req.Name, group_rules.NAME_MAX)
    for attr, column, limit in (("Introduction", "introduction", group_rules.INTRODUCTION_MAX),
                                ("Notification", "notification", group_rules.NOTIFICATION_MAX),
                                ("FaceUrl", "face_url", group_rules.FACE_URL_MAX)):
        value = getattr(req, attr)
        if value is not None:
            columns[column] = fields[attr] = check_text(attr, value, limit)
    if req.ApplyJoinOption is not None:
        columns["apply_join_option"] = fields["ApplyJoinOption"] = _option(
            req.ApplyJoinOption, JoinOption, "ApplyJoinOption")
    if req.InviteJoinOption is not None:
        if group_type is GroupType.AVCHATROOM:
            raise errors.NoPermission("an AVChatRoom has no invitations: InviteJoinOption "
                                      "cannot be set")
        columns["invite_join_option"] = fields["InviteJoinOption"] = _option(
            req.InviteJoinOption, InviteOption, "InviteJoinOption")
    if req.MuteAllMember is not None:
        if req.MuteAllMember not in MUTE_ALL_VALUES:
            raise errors.InvalidParameter("MuteAllMember must be On or Off")
        if group_type is GroupType.PRIVATE:
            raise errors.NoPermission("Private (Work) groups do not support muting members")
        columns["shut_up_all"] = req.MuteAllMember == "On"
        fields["MuteAllMember"] = req.MuteAllMember
    max_members = None
    if req.MaxMemberNum is not None:
        cap = group_rules.member_cap(group_type, edition)
        if cap is None:
            raise errors.NoPermission("an AVChatRoom has no member limit: MaxMemberNum "
                                      "cannot be set")
        if not 0 < req.MaxMemberNum <= cap:
            raise errors.InvalidParameter(
                f"MaxMemberNum must be between 1 and {cap} for a {group_type} group")
        max_members = fields["MaxMemberNum"] = req.MaxMemberNum
    data: dict[str, str] = {}
    if req.AppDefinedData:
        for item in req.AppDefinedData:
            if not item.Key:
                raise errors.InvalidParameter("AppDefinedData Key must not be empty")
            check_text("AppDefinedData Key", item.Key, group_rules.APP_DEFINED_KEY_MAX)
            check_text("AppDefinedData Value", item.Value, group_rules.APP_DEFINED_VALUE_MAX)
            data[item.Key] = item.Value
        fields["AppDefinedData"] = [{"Key": k, "Value": v} for k, v in data.items()]
    return InfoChange(columns, fields, data, max_members)


def merged_data(stored: Mapping[str, str], changes: Mapping[str, str]) -> dict[str, str]:
    """Custom fields after a change: an empty Value deletes its key; at most 10 keys stay
    (10004 past that)."""
    merged = dict(stored)
    for key, value in changes.items():
        if value:
            merged[key] = value
        else:
            merged.pop(key, None)
    if len(merged) > group_rules.APP_DEFINED_KEYS_MAX:
        raise errors.InvalidParameter(
            f"custom fields would exceed {group_rules.APP_DEFINED_KEYS_MAX} keys")
    return merged


def info_columns(group: Group, change: InfoChange, now: int) -> dict[str, Any]:
    """The columns to write, given the group as stored (under its lock): MaxMemberNum no
    lower than MemberNum (10004), custom fields merged; InfoSeq and LastInfoTime advance.
    Empty when nothing is changed."""
    if change.empty:
        return {}
    columns = dict(change.columns)
    if change.max_member_num is not None:
        if change.max_member_num < group.member_num:
            raise errors.InvalidParameter(
                f"MaxMemberNum {change.max_member_num} is below the group's "
                f"{group.member_num} members")
        columns["max_member_num"] = change.max_member_num
    if change.data:
        columns["app_defined_data"] = merged_data(group.app_defined_data, change.data)
    columns["info_seq"] = group.info_seq + 1
    columns["last_info_time"] = now
    return columns


def callback_info_fields(change: InfoChange) -> dict[str, Any]:
    """The changed fields that Group.CallbackAfterGroupInfoChanged reports (may be empty)."""
    return {k: change.fields[k] for k in CALLBACK_INFO_FIELDS if k in change.fields}


# --- modify_group_member_info ------------------------------------------------------------

MSG_FLAGS = ("AcceptAndNotify", "Discard", "AcceptNotNotify", "AcceptNotNotifyExceptAt")


class MemberInfoFields(Protocol):
    @property
    def Role(self) -> str | None: ...
    @property
    def MsgFlag(self) -> str | None: ...
    @property
    def NameCard(self) -> str | None: ...
    @property
    def MuteTime(self) -> int | None: ...
    @property
    def AppMemberDefinedData(self) -> Sequence[KeyValueFields] | None: ...


@dataclass(frozen=True, slots=True)
class MemberChange:
    columns: dict[str, Any]  # group_members columns (app_member_defined_data merged later)
    data: dict[str, str]
    mute: int | None  # MuteTime seconds (0 unmutes), applied through the moderation store

    @property
    def empty(self) -> bool:
        return not self.columns and not self.data and self.mute is None


def check_roster_target(group: Group, command: str) -> None:
    """An AVChatRoom keeps no member profiles: 10007 (Tencent)."""
    if group.type is GroupType.AVCHATROOM:
        raise errors.NoPermission(
            f"{command} does not apply to AVChatRoom groups, which keep no member list")


def plan_member_change(group: Group, req: MemberInfoFields) -> MemberChange:
    """modify_group_member_info's checks on the request and the group type."""
    columns: dict[str, Any] = {}
    if req.Role is not None:
        if req.Role not in (Role.ADMIN, Role.MEMBER):
            raise errors.InvalidParameter(
                "Role must be Admin or Member (the owner changes through change_group_owner)")
        if req.Role == Role.ADMIN and group.type is GroupType.PRIVATE:
            raise errors.NoPermission("Private (Work) groups have no admins")
        columns["role"] = req.Role
    if req.MsgFlag is not None:
        if req.MsgFlag not in MSG_FLAGS:
            raise errors.InvalidParameter(f"MsgFlag must be one of {', '.join(MSG_FLAGS)}")
        columns["msg_flag"] = req.MsgFlag
    if req.NameCard is not None:
        columns["name_card"] = check_text("NameCard", req.NameCard, group_rules.NAME_CARD_MAX)
    if req.MuteTime is not None and group.type is GroupType.PRIVATE:
        raise errors.NoPermission("Private (Work) groups do not support muting members")
    data: dict[str, str] = {}
    for item in req.AppMemberDefinedData or ():
        if not item.Key:
            raise errors.InvalidParameter("AppMemberDefinedData Key must not be empty")
        check_text("AppMemberDefinedData Key", item.Key, group_rules.APP_DEFINED_KEY_MAX)
        check_text("AppMemberDefinedData Value", item.Value,
                   group_rules.APP_DEFINED_VALUE_MAX)
        data[item.Key] = item.Value
    return MemberChange(columns, data, req.MuteTime)


def member_columns(group: Group, member: Member | None, account: str,
                   change: MemberChange) -> dict[str, Any]:
    """The member row's new columns, given the row as stored (under the group's lock):
    10007 for a non-member and for a change of the owner's role."""
    if member is None:
        raise errors.NoPermission(
            f"{errors.shown(account)} is not a member of group {group.group_id!r}")
    columns = dict(change.columns)
    role = columns.get("role")
    if role is not None and member.role is Role.OWNER:
        raise errors.NoPermission(
            "the group owner's role cannot be changed: use change_group_owner")
    if role == member.role.value:
        del columns["role"]
    if change.data:
        columns["app_member_defined_data"] = merged_data(
            member.app_member_defined_data, change.data) or None
    return columns


# --- change_group_owner ------------------------------------------------------------------


def check_new_owner(group: Group, account: str, role: str | None) -> None:
    """The new owner must be a member (10007 when not); AVChatRoom: 10007 (Tencent)."""
    if group.type is GroupType.AVCHATROOM:
        raise errors.NoPermission("an AVChatRoom's owner cannot be changed")
    if role is None:
        raise errors.NoPermission(
            f"the new owner {errors.shown(account)} must be a member of group "
            f"{group.group_id!r}")


# --- get_role_in_group -------------------------------------------------------------------

ROLE_QUERY_MAX = 500
NOT_MEMBER = "NotMember"


def check_role_query(group: Group, accounts: Sequence[str]) -> None:
    """1 to 500 accounts (10004 / 10005); not an AVChatRoom (10007, Tencent)."""
    check_roster_target(group, "get_role_in_group")
    if not accounts:
        raise errors.InvalidParameter("User_Account is empty")
    if len(accounts) > ROLE_QUERY_MAX:
        raise errors.TooManyAccounts(f"User_Account lists more than {ROLE_QUERY_MAX} accounts")


def role_list(accounts: Sequence[str], roles: Mapping[str, str]) -> list[dict[str, str]]:
    """UserIdList: one entry per requested account, in request order."""
    return [{"Member_Account": a, "Role": roles.get(a, NOT_MEMBER)} for a in accounts]


# --- get_joined_group_list ---------------------------------------------------------------

SELF_INFO_FIELDS = MEMBER_FIELDS


@dataclass(frozen=True, slots=True)
class JoinedQuery:
    """Which of an account's groups get_joined_group_list reads."""

    types: tuple[GroupType, ...]  # empty: none can match
    with_inactive: bool  # Private groups with no message yet
    limit: int | None
    offset: int


def joined_query(group_type: str | None, with_huge: int, with_inactive: int,
                 limit: int | None, offset: int) -> JoinedQuery:
    """Tencent leaves out AVChatRoom groups unless WithHugeGroups is 1, and Work (Private)
    groups not yet activated unless WithNoActiveGroups is 1. OpenTIM keeps no roster for
    an AVChatRoom (its members are live sessions), so none is ever listed. A Private group
    is active once it has a message. Limit 0 or absent: every group."""
    for name, value in (("WithHugeGroups", with_huge), ("WithNoActiveGroups", with_inactive)):
        if value not in (0, 1):
            raise errors.InvalidParameter(f"{name} must be 0 or 1")
    if group_type:
        wanted: tuple[GroupType, ...] = (group_rules.parse_group_type(group_type),)
    else:
        wanted = tuple(GroupType)
    types = tuple(t for t in wanted if t is not GroupType.AVCHATROOM)
    return JoinedQuery(types, bool(with_inactive), limit or None, offset)


def check_self_info_filter(names: Sequence[str]) -> None:
    for name in names:
        if name not in SELF_INFO_FIELDS:
            raise errors.InvalidParameter(
                f"SelfInfoFilter has unknown field {errors.shown(name)}")


# --- group attributes --------------------------------------------------------------------

ATTR_KEYS_MAX = 16
ATTR_KEY_MAX = 32  # bytes
ATTR_VALUE_MAX = 4000  # bytes (Tencent's error table; the SDK pages say "4 KB")
ATTR_TOTAL_MAX = 16000  # bytes of every key and value together ("16 KB")
ATTR_WRITES_PER_SECOND = 5  # per group, every write command together (10049)
# Tencent's tables: every type supports attributes (SDK 7.0+), but clear_group_attr's page
# lists Community as unsupported.
CLEAR_UNSUPPORTED = (GroupType.COMMUNITY,)


class AttrFields(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def value(self) -> str: ...


def check_clear_target(group: Group) -> None:
    if group.type in CLEAR_UNSUPPORTED:
        raise errors.NoPermission(
            f"clear_group_attr does not apply to {group.type.value} groups (Tencent)")


def attr_pairs(items: Sequence[AttrFields], *, allow_empty: bool = False) -> dict[str, str]:
    """The request's key/value pairs, checked one by one: 10045 for a key over 32 bytes,
    10046 for a value over 4000; 10004 for an empty key or an empty list."""
    if not items and not allow_empty:
        raise errors.InvalidParameter("GroupAttr is empty")
    pairs: dict[str, str] = {}
    for item in items:
        _check_key(item.key)
        if len(item.value.encode()) > ATTR_VALUE_MAX:
            raise errors.AttrValueTooLong(
                f"the value of attribute {errors.shown(item.key)} exceeds {ATTR_VALUE_MAX} "
                "bytes")
        pairs[item.key] = item.value
    if len(pairs) > ATTR_KEYS_MAX:
        raise errors.TooManyAttrs(f"GroupAttr has more than {ATTR_KEYS_MAX} keys")
    return pairs


def attr_keys(keys: Sequence[str]) -> list[str]:
    if not keys:
        raise errors.InvalidParameter("GroupAttr is empty")
    for key in keys:
        _check_key(key)
    return list(dict.fromkeys(keys))


def _check_key(key: str) -> None:
    if not key:
        raise errors.InvalidParameter("an attribute key must not be empty")
    if len(key.encode()) > ATTR_KEY_MAX:
        raise errors.AttrKeyTooLong(
            f"attribute key {errors.shown(key)} exceeds {ATTR_KEY_MAX} bytes")


def check_attr_total(attrs: Mapping[str, str]) -> dict[str, str]:
    """The stored whole after a write: at most 16 keys (10047), 16000 bytes (10048)."""
    if len(attrs) > ATTR_KEYS_MAX:
        raise errors.TooManyAttrs(f"the group would have more than {ATTR_KEYS_MAX} attributes")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in attrs.items())
    if size > ATTR_TOTAL_MAX:
        raise errors.AttrsTooLarge(
            f"the group's attributes would take {size} bytes, more than {ATTR_TOTAL_MAX}")
    return dict(attrs)


def modified_attrs(stored: Mapping[str, str], pairs: Mapping[str, str]) -> dict[str, str]:
    """modify_group_attr: the pairs set over the stored attributes."""
    return check_attr_total({**stored, **pairs})


def deleted_attrs(stored: Mapping[str, str], keys: Sequence[str]) -> dict[str, str]:
    """delete_group_attr: 10050 when a key is not set."""
    missing = [k for k in keys if k not in stored]
    if missing:
        raise errors.AttrNotFound(
            f"attribute {errors.shown(missing[0])} is not set in this group")
    return {k: v for k, v in stored.items() if k not in keys}


def attr_list(attrs: Mapping[str, str]) -> list[dict[str, str]]:
    """GroupAttrAry (lower-case key/value, as Tencent spells them)."""
    return [{"key": k, "value": v} for k, v in attrs.items()]


# --- Group.CallbackBeforeCreateGroup -----------------------------------------------------

APP_REFUSAL_CODES = range(10100, 10201)  # the app's own codes, passed on to the caller


def create_refusal(reply: Mapping[str, Any] | None) -> errors.TimError | None:
    """The refusal a CallbackBeforeCreateGroup reply asks for, or None to create: ErrorCode
    1 refuses with 10016; a code in 10100-10200 refuses with that code and the reply's
    ErrorInfo (Tencent). No reply (no URL, switched off, failed, timed out), ErrorCode 0 or
    any other value lets the group be created."""
    if not isinstance(reply, Mapping):
        return None
    code = reply.get("ErrorCode", 0)
    info = reply.get("ErrorInfo")
    text = info if isinstance(info, str) and info else None
    if code == 1:
        return errors.RefusedByCallback(text)
    if isinstance(code, int) and code in APP_REFUSAL_CODES:
        return errors.group_callback_error(code)(text)
    return None


# --- Group.CallbackAfterGroupFull --------------------------------------------------------


def fills(group: Group, added: int) -> bool:
    """Whether adding ``added`` members to ``group`` (as read before the add) left it full:
    Tencent calls CallbackAfterGroupFull when new members fill a group (or cannot join a
    full one, which add_group_member reports as 10014)."""
    cap = group.max_member_num
    return added > 0 and cap is not None and group.member_num + added >= cap
