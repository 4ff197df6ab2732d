"""Groups: creation with the first members, reads, pages, dismissal."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from opentim import errors
from opentim.domain.groups import Group, GroupType, Member, Role
from opentim.storage.base import GroupPage
from opentim.storage.database import Database
from opentim.storage.pg_reader import prebuilt
from opentim.storage.rows import (
    GET_GROUP,
    GroupLock,
    group_from_row,
    group_key,
    group_values,
    member_values,
)
from opentim.storage.schema import (
    group_attrs,
    group_members,
    group_messages,
    group_restrictions,
    groups,
)

_GET_GROUPS = prebuilt(select(groups).where(
    groups.c.sdkappid == bindparam("app"),
    groups.c.group_id.in_(bindparam("grps", expanding=True))))


@functools.cache
def _list_groups_stmts(typed: bool) -> tuple[Any, Any]:
    """list_page's count and page statements, with or without the type filter."""
    where = [groups.c.sdkappid == bindparam("app")]
    if typed:
        where.append(groups.c.type == bindparam("type"))
    page = select(groups.c.group_id).where(*where).order_by(groups.c.group_id) \
        .limit(bindparam("limit")).offset(bindparam("offset"))
    return prebuilt(select(func.count()).where(*where)), prebuilt(page)


class SqlGroups:
    """The GroupStore on one database (members: ``members.py``)."""


    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock_group = GroupLock(db.dialect.locking(GET_GROUP))

    async def create(self, group: Group, members: Sequence[Member]) -> None:
        """Create a group with its initial members (accounts must exist).

        Raises ``errors.GroupIdInUse`` when the ID is taken.
        """
        values = group_values(group, len(members))
        try:
            async with self.db.write() as conn:
                await conn.execute(groups.insert().values(values))
                if members:
                    await conn.execute(
                        group_members.insert(),
                        [member_values(group.sdkappid, group.group_id, m,
                                       group.next_msg_seq - 1) for m in members],
                    )
        except IntegrityError as exc:
            raise errors.GroupIdInUse(group_id=group.group_id) from exc
        group.member_num = len(members)

    async def get(self, sdkappid: int, group_ids: Sequence[str]) -> dict[str, Group]:
        if not group_ids:
            return {}
        async with self.db.read() as conn:
            if len(group_ids) == 1:  # every per-group command: a prebuilt statement
                rows = await conn.execute(GET_GROUP, {"app": sdkappid, "grp": group_ids[0]})
                return {row.group_id: group_from_row(row) for row in rows}
            rows = await conn.execute(_GET_GROUPS, {"app": sdkappid,
                                                    "grps": list(set(group_ids))})
            return {row.group_id: group_from_row(row) for row in rows}

    async def destroy(self, sdkappid: int, group_id: str) -> bool:
        key = (groups.c.sdkappid == sdkappid, groups.c.group_id == group_id)
        async with self.db.write() as conn:
            gone = await conn.execute(delete(groups).where(*key))
            for table in (group_members, group_messages, group_restrictions, group_attrs):
                await conn.execute(
                    delete(table).where(table.c.sdkappid == sdkappid,
                                        table.c.group_id == group_id)
                )
        return gone.rowcount > 0

    async def list_page(self, sdkappid: int, *, limit: int, offset: int,
                        group_type: GroupType | None) -> GroupPage:
        count, page = _list_groups_stmts(group_type is not None)
        params = {"app": sdkappid, "type": None if group_type is None else group_type.value,
                  "limit": limit, "offset": offset}
        async with self.db.read() as conn:
            total = (await conn.execute(count, params)).scalar_one()
            ids = list((await conn.execute(page, params)).scalars())
        following = offset + len(ids)
        return GroupPage(ids, total, following if following < total else 0)

    # --- administration (modify_group_base_info, change_group_owner, create callbacks) ----

    async def modify_info(self, sdkappid: int, group_id: str,
                          plan: Callable[[Group], dict[str, Any]]) -> tuple[Group, Group]:
        """Change a group's columns in one transaction, the group row locked: ``plan`` gets
        the group as stored and returns the columns to set (nothing: no write). Returns
        the group before and after. Raises ``errors.GroupNotFound``."""
        async with self.db.write() as conn:
            before = await self._lock_group(conn, sdkappid, group_id)
            values = plan(before)
            if not values:
                return before, before
            row = (await conn.execute(
                update(groups).where(*group_key(sdkappid, group_id)).values(**values)
                .returning(*groups.c))).one()
            return before, group_from_row(row)

    async def change_owner(self, sdkappid: int, group_id: str, new_owner: str, *,
                           check: Callable[[Group, str | None], None], now: int) -> Group:
        """Make ``new_owner`` the owner, the old owner (if a member) a Member, in one
        transaction; ``check`` gets the group and the new owner's role (None: not a member)
        under the group's lock and may raise. InfoSeq advances. Returns the group before."""
        m = group_members.c
        async with self.db.write() as conn:
            group = await self._lock_group(conn, sdkappid, group_id)
            role = (await conn.execute(select(m.role).where(
                m.sdkappid == sdkappid, m.group_id == group_id,
                m.member == new_owner))).scalar()
            check(group, role)
            if group.owner == new_owner and role == Role.OWNER:
                return group
            key = (m.sdkappid == sdkappid, m.group_id == group_id)
            await conn.execute(update(group_members).where(
                *key, m.role == Role.OWNER.value).values(role=Role.MEMBER.value))
            await conn.execute(update(group_members).where(
                *key, m.member == new_owner).values(role=Role.OWNER.value))
            await conn.execute(update(groups).where(*group_key(sdkappid, group_id)).values(
                owner=new_owner, info_seq=groups.c.info_seq + 1, last_info_time=now))
        return group

    async def count_owned(self, sdkappid: int, owner: str, group_type: GroupType) -> int:
        """How many groups of this type the account owns (CallbackBeforeCreateGroup's
        CreateGroupNum)."""
        async with self.db.read() as conn:
            return int((await conn.execute(_COUNT_OWNED, {
                "app": sdkappid, "owner": owner, "type": group_type.value})).scalar_one())


_COUNT_OWNED = prebuilt(select(func.count()).select_from(groups).where(
    groups.c.sdkappid == bindparam("app"), groups.c.owner == bindparam("owner"),
    groups.c.type == bindparam("type")))
