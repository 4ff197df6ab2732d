"""Group members: pages, roles, adding (imports, invitations), removal, unread counts.

Membership writes: member_num stays exact because every change to a group's roster also
updates the group row in the same transaction, which takes that row's lock (SQLite: the
process write lock). Adding members takes it last (see ``add``); removals and message writes
take it first. Adds lock only keys they create, which no other writer waits on, so the two
orders cannot deadlock.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, null, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from opentim import errors
from opentim.domain import imports
from opentim.domain.groups import Group, Member
from opentim.storage.base import NewMembers
from opentim.storage.database import Database
from opentim.storage.pg_reader import prebuilt
from opentim.storage.rows import (
    GET_GROUP,
    GROUP_KEY,
    GroupLock,
    gone,
    group_from_row,
    group_key,
    member_from_row,
)
from opentim.storage.schema import group_members, groups

# Built once: constructing Core statements per call costs more than running these.
# The UPDATE takes the group row's lock; RETURNING gives the true count under it.
_COUNT_MEMBERS = update(groups).where(*GROUP_KEY).values(
    member_num=groups.c.member_num + bindparam("added")).returning(
    groups.c.member_num, groups.c.max_member_num)
_MEMBER_ROLES = prebuilt(select(group_members.c.member, group_members.c.role).where(
    group_members.c.sdkappid == bindparam("app"), group_members.c.group_id == bindparam("grp"),
    group_members.c.member.in_(bindparam("accounts", expanding=True))))
_MEMBER_ACCOUNTS = prebuilt(select(group_members.c.member).where(
    group_members.c.sdkappid == bindparam("app"), group_members.c.group_id == bindparam("grp")))


@functools.cache
def _members_stmt(roles: bool, after: bool, limit: bool, offset: bool) -> Any:
    """get's statement for one combination of filters (16 at most, built once)."""
    # Uncorrelated: the planner evaluates it once per page, not once per row.
    next_seq = select(groups.c.next_msg_seq).where(*GROUP_KEY)
    stmt = select(group_members, next_seq.scalar_subquery().label("next_msg_seq")).where(
        group_members.c.sdkappid == bindparam("app"), group_members.c.group_id == bindparam("grp")
    )
    if roles:
        stmt = stmt.where(group_members.c.role.in_(bindparam("roles", expanding=True)))
    if after:
        stmt = stmt.where(tuple_(group_members.c.join_time, group_members.c.member)
                          > tuple_(bindparam("after_time"), bindparam("after_member")))
    stmt = stmt.order_by(group_members.c.join_time, group_members.c.member)
    if limit:
        stmt = stmt.limit(bindparam("limit"))
    if offset:
        stmt = stmt.offset(bindparam("offset"))
    return prebuilt(stmt)


class SqlMembers:
    """The MemberStore on one database."""


    def __init__(self, db: Database) -> None:
        self.db = db
        self._dialect = db.dialect
        self._lock_group = GroupLock(db.dialect.locking(GET_GROUP))

    async def get(self, sdkappid: int, group_id: str, *, limit: int | None,
                  offset: int = 0, after: tuple[int, str] | None = None,
                  roles: Sequence[str] = ()) -> list[Member]:
        """Members in join order; ``after`` is a (join_time, account) keyset cursor.

        ``unread_msg_num`` is derived: the group's message count minus the member's read
        mark ``msg_seq``.
        """
        stmt = _members_stmt(bool(roles), after is not None, limit is not None, bool(offset))
        params: dict[str, Any] = {"app": sdkappid, "grp": group_id, "roles": list(roles),
                                  "limit": limit, "offset": offset}
        if after is not None:
            params["after_time"], params["after_member"] = after
        async with self.db.read() as conn:
            return [member_from_row(row) for row in await conn.execute(stmt, params)
                    if row.next_msg_seq is not None]

    async def roles(self, sdkappid: int, group_id: str,
                    accounts: Sequence[str]) -> dict[str, str]:
        if not accounts:
            return {}
        async with self.db.read() as conn:
            rows = await conn.execute(_MEMBER_ROLES, {"app": sdkappid, "grp": group_id,
                                                      "accounts": list(set(accounts))})
            return {r.member: r.role for r in rows}

    async def accounts(self, sdkappid: int, group_id: str) -> list[str]:
        async with self.db.read() as conn:
            rows = await conn.execute(_MEMBER_ACCOUNTS, {"app": sdkappid, "grp": group_id})
            return [r.member for r in rows]

    async def add(self, sdkappid: int, group_id: str,
                  prepare: Callable[[Group], NewMembers], *,
                  full_error: bool = False) -> dict[str, int]:
        """Add members in one transaction, holding the group row's lock only at its end.

        The rows go in first (sorted, so concurrent imports take key locks in one order),
        then the count is bumped with UPDATE ... RETURNING, which is where the group row
        lock is taken: imports into one group overlap everything but their last statement
        and the commit. Only then is the cap checked against the true count; members past
        it are taken out again, in request order, inside the same transaction. What each
        step decides is in ``domain/imports.py``.
        """
        key = {"app": sdkappid, "grp": group_id}
        async with self.db.write() as conn:
            row = (await conn.execute(GET_GROUP, key)).first()
            if row is None:
                raise gone(group_id)
            group = group_from_row(row)
            members = prepare(group)
            if not members.accounts:
                return {}
            sql, params = self._dialect.member_exceptions(sdkappid, group_id,
                                                          members.accounts)
            exceptions = {account: bool(is_member)
                          for account, is_member in await conn.execute(sql, params)}
            results, take = imports.screen(members.accounts, exceptions)
            if not take:
                return results
            inserted = await self._insert(conn, sdkappid, group_id, members, take,
                                          group.next_msg_seq - 1)
            counted = (await conn.execute(
                _COUNT_MEMBERS, {**key, "added": len(inserted)})).first()
            if counted is None:  # dismissed while we inserted
                raise gone(group_id)
            added = [members.accounts[i] for i in take if members.accounts[i] in inserted]
            fits = imports.room(counted.max_member_num, counted.member_num, len(added))
            if fits is not None:
                if imports.full_refusal(full_error, fits):
                    raise errors.GroupFull(
                        f"group {group_id!r} is full ({counted.max_member_num} members)")
                await self._take_out(conn, key, added[fits:])
                added = added[:fits]
            return imports.settle(members.accounts, results, take, inserted, set(added))

    async def _insert(self, conn: AsyncConnection, sdkappid: int, group_id: str,
                      members: NewMembers, take: list[int], msg_count: int) -> set[str]:
        """Insert the chosen rows (sorted by account); returns the accounts inserted."""
        take = sorted(take, key=lambda i: members.accounts[i])
        read_mark = imports.read_mark
        sql, params = self._dialect.insert_members(
            sdkappid, group_id,
            [members.accounts[i] for i in take],
            [members.roles[i] for i in take],
            [members.join_times[i] for i in take],
            [read_mark(members.unread[i], msg_count) for i in take])
        rows = await conn.execute(sql, params)
        return set(rows.scalars())

    async def _take_out(self, conn: AsyncConnection, key: dict[str, Any],
                        accounts: list[str]) -> None:
        """Remove rows this transaction inserted past the cap, and uncount them."""
        if not accounts:
            return
        await conn.execute(
            delete(group_members).where(group_members.c.sdkappid == key["app"],
                                        group_members.c.group_id == key["grp"],
                                        group_members.c.member.in_(accounts)))
        await conn.execute(_COUNT_MEMBERS, {**key, "added": -len(accounts)})

    async def delete(self, sdkappid: int, group_id: str,
                     accounts: Sequence[str]) -> list[str]:
        """Remove members; returns the accounts that were members."""
        key = and_(group_members.c.sdkappid == sdkappid, group_members.c.group_id == group_id)
        async with self.db.write() as conn:
            await self._lock_group(conn, sdkappid, group_id)
            # RETURNING: two concurrent deletes of one member must not both count it.
            present = list((await conn.execute(
                delete(group_members)
                .where(key, group_members.c.member.in_(set(accounts)))
                .returning(group_members.c.member)
            )).scalars())
            if present:
                await conn.execute(
                    update(groups).where(*group_key(sdkappid, group_id))
                    .values(member_num=groups.c.member_num - len(present))
                )
        return present

    async def set_unread(self, sdkappid: int, group_id: str, account: str,
                         unread: int) -> bool:
        """Set a member's unread count (clamped to the message count); False if not a member."""
        async with self.db.write() as conn:
            msg_count = (await self._lock_group(conn, sdkappid, group_id)).next_msg_seq - 1
            done = await conn.execute(
                update(group_members)
                .where(group_members.c.sdkappid == sdkappid,
                       group_members.c.group_id == group_id,
                       group_members.c.member == account)
                .values(msg_seq=imports.read_mark(unread, msg_count))
            )
        return done.rowcount > 0

    # --- administration (modify_group_member_info, get_joined_group_list) ----------------

    async def modify(self, sdkappid: int, group_id: str, account: str,
                     plan: Callable[[Group, Member | None], dict[str, Any]]
                     ) -> tuple[Member | None, Member | None]:
        """Change a member row in one transaction, the group row locked first (the order
        every roster write takes): ``plan`` gets the group and the member as stored (None:
        not a member) and returns the columns to set, or raises. Returns the member before
        and after. Raises ``errors.GroupNotFound``."""
        params = {"app": sdkappid, "grp": group_id, "acc": account}
        async with self.db.write() as conn:
            group = await self._lock_group(conn, sdkappid, group_id)
            row = (await conn.execute(_ONE_MEMBER, params)).first()
            before = None if row is None else member_from_row(row)
            values = plan(group, before)
            if not values or before is None:
                return before, before
            m = group_members.c
            await conn.execute(update(group_members).where(
                m.sdkappid == sdkappid, m.group_id == group_id, m.member == account)
                .values(**values))
            after = member_from_row((await conn.execute(_ONE_MEMBER, params)).one())
        return before, after

    async def joined(self, sdkappid: int, account: str, *, types: Sequence[str],
                     with_inactive: bool, limit: int | None,
                     offset: int) -> tuple[int, list[tuple[Group, Member]]]:
        """The groups ``account`` is a member of, of the given types, in join order, with
        its member row in each: one query (the total rides along as a window count; a
        second, counting query only for a page past the end). Private groups with no
        message yet are left out unless ``with_inactive``. The custom fields
        (``app_defined_data``, ``app_member_defined_data``) are not read: left empty."""
        total, rows = await self._joined(sdkappid, account, types, with_inactive, limit,
                                         offset, ids_only=False)
        return total, [(group_from_row(r), member_from_row(r)) for r in rows]

    async def joined_ids(self, sdkappid: int, account: str, *, types: Sequence[str],
                         with_inactive: bool, limit: int | None,
                         offset: int) -> tuple[int, list[str]]:
        """``joined`` with the group IDs alone (the reply without a ResponseFilter)."""
        total, rows = await self._joined(sdkappid, account, types, with_inactive, limit,
                                         offset, ids_only=True)
        return total, [r.group_id for r in rows]

    async def _joined(self, sdkappid: int, account: str, types: Sequence[str],
                      with_inactive: bool, limit: int | None, offset: int, *,
                      ids_only: bool) -> tuple[int, list[Any]]:
        if not types:
            return 0, []
        stmt, count = _joined_stmts(not with_inactive, limit is not None, bool(offset),
                                    ids_only)
        params: dict[str, Any] = {"app": sdkappid, "acc": account, "types": list(types),
                                  "limit": limit, "offset": offset, "private": "Private"}
        async with self.db.read() as conn:
            rows = list(await conn.execute(stmt, params))
            if rows:
                total = rows[0].total
            else:
                total = (await conn.execute(count, params)).scalar_one() if offset else 0
        return int(total), rows


_NEXT_SEQ = select(groups.c.next_msg_seq).where(*GROUP_KEY).scalar_subquery()
_ONE_MEMBER = select(group_members, _NEXT_SEQ.label("next_msg_seq")).where(
    group_members.c.sdkappid == bindparam("app"), group_members.c.group_id == bindparam("grp"),
    group_members.c.member == bindparam("acc"))
# The group's and the member row's columns (the two share only the key columns), without
# the custom fields, which no get_joined_group_list reply shows: decoding 2,000 JSON values
# would cost more than the query.
_JOINED_COLUMNS = (
    *(c for c in groups.c if c.name != "app_defined_data"),
    null().label("app_defined_data"),
    *(c for c in group_members.c
      if c.name not in ("sdkappid", "group_id", "app_member_defined_data")),
    null().label("app_member_defined_data"))


@functools.cache
def _joined_stmts(active_only: bool, limit: bool, offset: bool,
                  ids_only: bool) -> tuple[Any, Any]:
    """joined's page and count statements for one combination of options."""
    m, g = group_members.c, groups.c
    where = [m.sdkappid == bindparam("app"), m.member == bindparam("acc"),
             g.type.in_(bindparam("types", expanding=True))]
    if active_only:
        where.append(or_(g.type != bindparam("private"), g.next_msg_seq > 1))
    joined = group_members.join(groups, and_(g.sdkappid == m.sdkappid,
                                             g.group_id == m.group_id))
    columns: tuple[Any, ...] = (m.group_id,) if ids_only else _JOINED_COLUMNS
    page = select(*columns, func.count().over().label("total")) \
        .select_from(joined).where(*where).order_by(m.join_time, m.group_id)
    if limit:
        page = page.limit(bindparam("limit"))
    if offset:
        page = page.offset(bindparam("offset"))
    count = select(func.count()).select_from(joined).where(*where)
    return prebuilt(page), prebuilt(count)
