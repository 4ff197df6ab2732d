"""Rows to domain objects and back, and the group-row statements every concept store uses."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from opentim import errors
from opentim.domain.apps import App, Edition
from opentim.domain.groups import Group, GroupType, Member, Role
from opentim.domain.imports import read_mark
from opentim.storage.base import GroupMessage
from opentim.storage.pg_reader import prebuilt
from opentim.storage.schema import groups


def app_from_row(row: Row[Any]) -> App:
    commands = row.callback_commands
    return App(
        sdkappid=row.sdkappid,
        secret_key=row.secret_key,
        admins=frozenset(row.admins),
        edition=Edition(row.edition),
        online_member_list=bool(row.online_member_list),
        callback_url=row.callback_url,
        callback_token=row.callback_token,
        callback_commands=None if commands is None else frozenset(commands),
        rate_limit=row.rate_limit,
        profile_custom_tags=frozenset(row.profile_custom_tags or ()),
        group_msg_rate=row.group_msg_rate,
    )


def app_values(app: App, now: int) -> dict[str, Any]:
    return {
        "sdkappid": app.sdkappid,
        "secret_key": app.secret_key,
        "admins": sorted(app.admins),
        "edition": app.edition.value,
        "online_member_list": app.online_member_list,
        "callback_url": app.callback_url,
        "callback_token": app.callback_token,
        "callback_commands": None if app.callback_commands is None
        else sorted(app.callback_commands),
        "rate_limit": app.rate_limit,
        "profile_custom_tags": sorted(app.profile_custom_tags),
        "group_msg_rate": app.group_msg_rate,
        "updated_at": now,
    }


def group_from_row(row: Row[Any]) -> Group:
    return Group(
        sdkappid=row.sdkappid,
        group_id=row.group_id,
        type=GroupType(row.type),
        name=row.name,
        owner=row.owner,
        create_time=row.create_time,
        max_member_num=row.max_member_num,
        introduction=row.introduction,
        notification=row.notification,
        face_url=row.face_url,
        apply_join_option=row.apply_join_option,
        invite_join_option=row.invite_join_option,
        app_defined_data=dict(row.app_defined_data or {}),
        info_seq=row.info_seq,
        last_info_time=row.last_info_time,
        last_msg_time=row.last_msg_time,
        next_msg_seq=row.next_msg_seq,
        member_num=row.member_num,
        shut_up_all=bool(row.shut_up_all),
        support_topic=bool(row.support_topic),
    )


def group_values(group: Group, member_num: int) -> dict[str, Any]:
    return {
        "sdkappid": group.sdkappid,
        "group_id": group.group_id,
        "type": group.type.value,
        "name": group.name,
        "owner": group.owner,
        "introduction": group.introduction,
        "notification": group.notification,
        "face_url": group.face_url,
        "apply_join_option": group.apply_join_option,
        "invite_join_option": group.invite_join_option,
        "app_defined_data": group.app_defined_data,
        "max_member_num": group.max_member_num,
        "member_num": member_num,
        "create_time": group.create_time,
        "info_seq": group.info_seq,
        "last_info_time": group.last_info_time,
        "last_msg_time": group.last_msg_time,
        "next_msg_seq": group.next_msg_seq,
        "shut_up_all": group.shut_up_all,
        "support_topic": group.support_topic,
    }


def member_from_row(row: Row[Any]) -> Member:
    # next_msg_seq rides along from the groups row (see members.py): unread is derived.
    # (inline, not a call: a member page maps up to thousands of rows)
    return Member(
        account=row.member,
        role=Role(row.role),
        join_time=row.join_time,
        msg_seq=row.msg_seq,
        msg_flag=row.msg_flag,
        last_send_msg_time=row.last_send_msg_time,
        shut_up_until=row.shut_up_until,
        name_card=row.name_card,
        unread_msg_num=max(row.next_msg_seq - 1 - row.msg_seq, 0),
        app_member_defined_data=dict(row.app_member_defined_data or {}),
    )


def member_values(sdkappid: int, group_id: str, member: Member,
                  msg_count: int) -> dict[str, Any]:
    """A new member row; its read mark leaves ``unread_msg_num`` (clamped) unread."""
    return {
        "sdkappid": sdkappid,
        "group_id": group_id,
        "member": member.account,
        "role": member.role.value,
        "join_time": member.join_time,
        "msg_seq": read_mark(member.unread_msg_num, msg_count),
        "msg_flag": member.msg_flag,
        "last_send_msg_time": member.last_send_msg_time,
        "shut_up_until": member.shut_up_until,
        "name_card": member.name_card,
        "app_member_defined_data": member.app_member_defined_data or None,
    }


def message_values(sdkappid: int, group_id: str, seq: int,
                   message: GroupMessage) -> dict[str, Any]:
    return {
        "sdkappid": sdkappid,
        "group_id": group_id,
        "msg_seq": seq,
        "from_account": message.from_account,
        "send_time": message.send_time,
        "random": message.random,
        "msg_body": message.body,
        "cloud_custom_data": message.cloud_custom_data,
        "msg_priority": message.priority,
    }


GROUP_KEY = (groups.c.sdkappid == bindparam("app"), groups.c.group_id == bindparam("grp"))
# Reads are marked prebuilt (every value a bind parameter): on PostgreSQL they then run as
# SQL compiled once, straight on the driver (see database.py).
GET_GROUP = prebuilt(select(groups).where(*GROUP_KEY))


def group_key(sdkappid: int, group_id: str) -> tuple[Any, Any]:
    return groups.c.sdkappid == sdkappid, groups.c.group_id == group_id


def gone(group_id: str) -> errors.GroupNotFound:
    return errors.GroupNotFound(group_id=group_id)


class GroupLock:
    """Reads a group row under its lock, in a write transaction (see members.py)."""

    __slots__ = ("_stmt",)

    def __init__(self, locking_stmt: Any) -> None:
        self._stmt = locking_stmt

    async def __call__(self, conn: AsyncConnection, sdkappid: int, group_id: str) -> Group:
        row = (await conn.execute(self._stmt, {"app": sdkappid, "grp": group_id})).first()
        if row is None:
            raise gone(group_id)
        return group_from_row(row)
