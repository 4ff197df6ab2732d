"""The SQL implementation of the storage interfaces (SQLite and PostgreSQL)."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from sqlalchemy import Row, and_, bindparam, delete, func, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from opentim import errors
from opentim.domain.apps import App, Edition
from opentim.domain.groups import Group, GroupType, Member, MemberResult, Role
from opentim.storage.base import AccountProfile, GroupMessage, GroupPage, NewMembers
from opentim.storage.database import Database, Executor, prebuilt
from opentim.storage.schema import accounts, apps, group_members, group_messages, groups


def _app_from_row(row: Row[Any]) -> App:
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
    )


def _app_values(app: App, now: int) -> dict[str, Any]:
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
        "updated_at": now,
    }


def _group_from_row(row: Row[Any]) -> Group:
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


def _member_from_row(row: Row[Any]) -> Member:
    # next_msg_seq rides along from the groups row (see get_members): unread is derived.
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


def _member_values(sdkappid: int, group_id: str, member: Member,
                   msg_count: int) -> dict[str, Any]:
    """A new member row; its read mark leaves ``unread_msg_num`` (clamped) unread."""
    return {
        "sdkappid": sdkappid,
        "group_id": group_id,
        "member": member.account,
        "role": member.role.value,
        "join_time": member.join_time,
        "msg_seq": msg_count - min(member.unread_msg_num, msg_count),
        "msg_flag": member.msg_flag,
        "last_send_msg_time": member.last_send_msg_time,
        "shut_up_until": member.shut_up_until,
        "name_card": member.name_card,
        "app_member_defined_data": member.app_member_defined_data or None,
    }


# Membership checks and inserts bind each list of accounts as ONE parameter (a PostgreSQL
# array, a SQLite JSON text), so their cost does not depend on SQLAlchemy processing 300 x 10
# parameters, and probe one account at a time. The obvious ``user_id IN (:p1, ..., :p300)``
# lets PostgreSQL choose, from stale or skewed statistics, a plan that reads the whole tenant
# or the whole group on every request (seen: a cached generic plan scanning 17k accounts per
# call). LATERAL ... LIMIT 1 cannot become a hash join or a hashed subplan, so the plan stays
# a nested loop of index probes whatever the statistics say. SQLite plans each correlated
# EXISTS as an index probe per row.
_EXISTING_PG = prebuilt(text("""
SELECT w.account FROM unnest(CAST(:accounts AS VARCHAR[])) AS w(account)
JOIN LATERAL (SELECT 1 FROM accounts
              WHERE sdkappid = :app AND user_id = w.account LIMIT 1) AS a ON true
"""))
_EXISTING_SQLITE = text("""
SELECT w.value FROM json_each(:accounts) AS w
WHERE EXISTS (SELECT 1 FROM accounts WHERE sdkappid = :app AND user_id = w.value)
""")
# Only the exceptions come back: accounts that do not exist, and those already members
# (flag true). A fresh import of 300 members reads no rows at all.
_EXCEPTIONS_PG = text("""
SELECT w.account, m.x IS NOT NULL
FROM unnest(CAST(:accounts AS VARCHAR[])) AS w(account)
LEFT JOIN LATERAL (SELECT 1 AS x FROM accounts
                   WHERE sdkappid = :app AND user_id = w.account LIMIT 1) AS a ON true
LEFT JOIN LATERAL (SELECT 1 AS x FROM group_members
                   WHERE sdkappid = :app AND group_id = :grp AND member = w.account
                   LIMIT 1) AS m ON true
WHERE a.x IS NULL OR m.x IS NOT NULL
""")
_EXCEPTIONS_SQLITE = text("""
SELECT w.value, EXISTS (SELECT 1 FROM group_members
                        WHERE sdkappid = :app AND group_id = :grp AND member = w.value)
FROM json_each(:accounts) AS w
WHERE NOT EXISTS (SELECT 1 FROM accounts WHERE sdkappid = :app AND user_id = w.value)
   OR EXISTS (SELECT 1 FROM group_members
              WHERE sdkappid = :app AND group_id = :grp AND member = w.value)
""")
# One multi-row INSERT for the whole batch, its rows unpacked by the database from one
# parameter per column (PostgreSQL) or one JSON text (SQLite).
_MEMBER_COLUMNS = ("sdkappid, group_id, member, role, join_time, msg_seq, msg_flag, "
                   "last_send_msg_time, shut_up_until, name_card")
_INSERT_MEMBERS_PG = text(f"""
INSERT INTO group_members ({_MEMBER_COLUMNS})
SELECT :app, :grp, w.member, w.role, w.join_time, w.msg_seq, 'AcceptAndNotify', 0, 0, ''
FROM unnest(CAST(:members AS VARCHAR[]), CAST(:roles AS VARCHAR[]),
            CAST(:join_times AS BIGINT[]), CAST(:msg_seqs AS BIGINT[]))
     AS w(member, role, join_time, msg_seq)
ON CONFLICT DO NOTHING
RETURNING member
""")
# "WHERE true": SQLite needs it to tell an upsert's ON from a join's ON after a SELECT.
_INSERT_MEMBERS_SQLITE = text(f"""
INSERT INTO group_members ({_MEMBER_COLUMNS})
SELECT :app, :grp, json_extract(w.value, '$[0]'), json_extract(w.value, '$[1]'),
       json_extract(w.value, '$[2]'), json_extract(w.value, '$[3]'),
       'AcceptAndNotify', 0, 0, ''
FROM json_each(:rows) AS w WHERE true
ON CONFLICT DO NOTHING
RETURNING member
""")
_GROUP_KEY = (groups.c.sdkappid == bindparam("app"), groups.c.group_id == bindparam("grp"))
# Built once: constructing Core statements per call costs more than running these.
# The UPDATE takes the group row's lock; RETURNING gives the true count under it.
_COUNT_MEMBERS = update(groups).where(*_GROUP_KEY).values(
    member_num=groups.c.member_num + bindparam("added")).returning(
    groups.c.member_num, groups.c.max_member_num)
_UNCOUNT_MEMBERS = update(groups).where(*_GROUP_KEY).values(
    member_num=groups.c.member_num - bindparam("left"))
# Reads are marked prebuilt (every value a bind parameter): on PostgreSQL they then run as
# SQL compiled once, straight on the driver (see database.py).
_GET_GROUP = prebuilt(select(groups).where(*_GROUP_KEY))
_GET_GROUPS = prebuilt(select(groups).where(
    groups.c.sdkappid == bindparam("app"),
    groups.c.group_id.in_(bindparam("grps", expanding=True))))
_MEMBER_ROLES = prebuilt(select(group_members.c.member, group_members.c.role).where(
    group_members.c.sdkappid == bindparam("app"), group_members.c.group_id == bindparam("grp"),
    group_members.c.member.in_(bindparam("accounts", expanding=True))))
_PROFILES = prebuilt(select(accounts.c.user_id, accounts.c.nick, accounts.c.face_url).where(
    accounts.c.sdkappid == bindparam("app"),
    accounts.c.user_id.in_(bindparam("accounts", expanding=True))))
_GET_APP = prebuilt(select(apps).where(apps.c.sdkappid == bindparam("app")))
_LIST_APPS = prebuilt(select(apps).order_by(apps.c.sdkappid))


@functools.cache
def _list_groups_stmts(typed: bool) -> tuple[Any, Any]:
    """list_groups' count and page statements, with or without the type filter."""
    where = [groups.c.sdkappid == bindparam("app")]
    if typed:
        where.append(groups.c.type == bindparam("type"))
    page = select(groups.c.group_id).where(*where).order_by(groups.c.group_id) \
        .limit(bindparam("limit")).offset(bindparam("offset"))
    return prebuilt(select(func.count()).where(*where)), prebuilt(page)


@functools.cache
def _members_stmt(roles: bool, after: bool, limit: bool, offset: bool) -> Any:
    """get_members' statement for one combination of filters (16 at most, built once)."""
    # Uncorrelated: the planner evaluates it once per page, not once per row.
    next_seq = select(groups.c.next_msg_seq).where(*_GROUP_KEY)
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
_encode_json = msgspec.json.Encoder().encode


class SqlStore:
    """AppStore, AccountStore and GroupStore on one SQLAlchemy database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock_stmt = db.locking(_GET_GROUP)

    # --- apps -------------------------------------------------------------------------

    async def create_app(self, app: App, *, now: int) -> None:
        try:
            async with self.db.write() as conn:
                await conn.execute(apps.insert().values(_app_values(app, now)))
        except IntegrityError as exc:
            raise KeyError(app.sdkappid) from exc

    async def save_app(self, app: App, *, now: int) -> None:
        values = _app_values(app, now)
        async with self.db.write() as conn:
            await conn.execute(update(apps).where(apps.c.sdkappid == app.sdkappid).values(values))

    async def get_app(self, sdkappid: int) -> App | None:
        async with self.db.read() as conn:
            row = (await conn.execute(_GET_APP, {"app": sdkappid})).first()
        return None if row is None else _app_from_row(row)

    async def list_apps(self) -> list[App]:
        async with self.db.read() as conn:
            rows = (await conn.execute(_LIST_APPS)).all()
        return [_app_from_row(row) for row in rows]

    # --- accounts ---------------------------------------------------------------------

    async def import_accounts(self, sdkappid: int, profiles: Sequence[AccountProfile],
                              *, now: int) -> None:
        if not profiles:
            return
        async with self.db.write() as conn:
            known = await self._existing(conn, sdkappid, [p.user_id for p in profiles])
            fresh: dict[str, dict[str, Any]] = {}
            for p in profiles:
                if p.user_id in known:
                    changes = {k: v for k, v in (("nick", p.nick), ("face_url", p.face_url))
                               if v is not None}
                    if changes:
                        await conn.execute(
                            update(accounts)
                            .where(accounts.c.sdkappid == sdkappid,
                                   accounts.c.user_id == p.user_id)
                            .values(changes)
                        )
                    continue
                row = fresh.setdefault(p.user_id, {
                    "sdkappid": sdkappid, "user_id": p.user_id, "nick": "", "face_url": "",
                    "created_at": now,
                })
                # A later entry for the same new account in one batch wins, field by field.
                if p.nick is not None:
                    row["nick"] = p.nick
                if p.face_url is not None:
                    row["face_url"] = p.face_url
            if fresh:
                await conn.execute(accounts.insert(), list(fresh.values()))

    async def _existing(self, conn: Executor, sdkappid: int,
                        user_ids: Sequence[str]) -> set[str]:
        if not user_ids:
            return set()
        distinct = list(set(user_ids))
        sql, listed = (_EXISTING_SQLITE, _encode_json(distinct)) if self.db.is_sqlite \
            else (_EXISTING_PG, distinct)
        rows = await conn.execute(sql, {"app": sdkappid, "accounts": listed})
        return set(rows.scalars())

    async def existing_accounts(self, sdkappid: int, user_ids: Sequence[str]) -> set[str]:
        async with self.db.read() as conn:
            return await self._existing(conn, sdkappid, user_ids)

    async def delete_accounts(self, sdkappid: int, user_ids: Sequence[str]) -> set[str]:
        """Delete accounts with everything they hold in groups; returns those that existed.

        One transaction: the account rows, their member rows (roles, read marks and so
        unread counts, member data) with each group's ``member_num``, and their ownerships
        (``owner`` becomes NULL; the groups stay). Member rows go for every requested UserID,
        existing or not, so deleting again also clears a membership left by a write that
        raced an earlier deletion. Messages they sent stay in the groups' history.

        Groups are locked first, in ID order, as every other roster removal does (see
        "membership writes" below).
        """
        ids = sorted(set(user_ids))
        members_of = and_(group_members.c.sdkappid == sdkappid,
                          group_members.c.member.in_(ids))
        async with self.db.write() as conn:
            existed = set((await conn.execute(
                delete(accounts)
                .where(accounts.c.sdkappid == sdkappid, accounts.c.user_id.in_(ids))
                .returning(accounts.c.user_id)
            )).scalars())
            # ix_group_members_member: (sdkappid, member)
            joined = list((await conn.execute(
                select(group_members.c.group_id).where(members_of).distinct()
            )).scalars())
            if joined:
                await conn.execute(self.db.locking(
                    select(groups.c.group_id)
                    .where(groups.c.sdkappid == sdkappid, groups.c.group_id.in_(joined))
                    .order_by(groups.c.group_id)))
                left = Counter((await conn.execute(
                    delete(group_members)
                    .where(members_of, group_members.c.group_id.in_(joined))
                    .returning(group_members.c.group_id)
                )).scalars())
                if left:  # empty when concurrent removals took them all first
                    await conn.execute(_UNCOUNT_MEMBERS, [
                        {"app": sdkappid, "grp": group_id, "left": n}
                        for group_id, n in sorted(left.items())])
            # No index on owner: this reads the app's groups. Only account_delete pays it.
            await conn.execute(
                update(groups).where(groups.c.sdkappid == sdkappid, groups.c.owner.in_(ids))
                .values(owner=None))
        return existed

    async def get_profiles(self, sdkappid: int,
                           user_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        if not user_ids:
            return {}
        async with self.db.read() as conn:
            rows = await conn.execute(_PROFILES, {"app": sdkappid,
                                                  "accounts": list(set(user_ids))})
            return {r.user_id: (r.nick, r.face_url) for r in rows}

    # --- groups -----------------------------------------------------------------------

    async def create_group(self, group: Group, members: Sequence[Member]) -> None:
        values = {
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
            "member_num": len(members),
            "create_time": group.create_time,
            "info_seq": group.info_seq,
            "last_info_time": group.last_info_time,
            "last_msg_time": group.last_msg_time,
            "next_msg_seq": group.next_msg_seq,
            "shut_up_all": group.shut_up_all,
            "support_topic": group.support_topic,
        }
        try:
            async with self.db.write() as conn:
                await conn.execute(groups.insert().values(values))
                if members:
                    await conn.execute(
                        group_members.insert(),
                        [_member_values(group.sdkappid, group.group_id, m,
                                        group.next_msg_seq - 1) for m in members],
                    )
        except IntegrityError as exc:
            raise errors.GroupIdInUse(f"group ID {group.group_id!r} is already in use") from exc
        group.member_num = len(members)

    async def get_groups(self, sdkappid: int, group_ids: Sequence[str]) -> dict[str, Group]:
        if not group_ids:
            return {}
        async with self.db.read() as conn:
            if len(group_ids) == 1:  # every per-group command: a prebuilt statement
                rows = await conn.execute(_GET_GROUP, {"app": sdkappid, "grp": group_ids[0]})
                return {row.group_id: _group_from_row(row) for row in rows}
            rows = await conn.execute(_GET_GROUPS, {"app": sdkappid,
                                                    "grps": list(set(group_ids))})
            return {row.group_id: _group_from_row(row) for row in rows}

    async def destroy_group(self, sdkappid: int, group_id: str) -> bool:
        key = (groups.c.sdkappid == sdkappid, groups.c.group_id == group_id)
        async with self.db.write() as conn:
            gone = await conn.execute(delete(groups).where(*key))
            for table in (group_members, group_messages):
                await conn.execute(
                    delete(table).where(table.c.sdkappid == sdkappid,
                                        table.c.group_id == group_id)
                )
        return gone.rowcount > 0

    async def list_groups(self, sdkappid: int, *, limit: int, offset: int,
                          group_type: GroupType | None) -> GroupPage:
        count, page = _list_groups_stmts(group_type is not None)
        params = {"app": sdkappid, "type": None if group_type is None else group_type.value,
                  "limit": limit, "offset": offset}
        async with self.db.read() as conn:
            total = (await conn.execute(count, params)).scalar_one()
            ids = list((await conn.execute(page, params)).scalars())
        following = offset + len(ids)
        return GroupPage(ids, total, following if following < total else 0)

    async def get_members(self, sdkappid: int, group_id: str, *, limit: int | None,
                          offset: int = 0, after: tuple[int, str] | None = None,
                          roles: Sequence[str] = ()) -> list[Member]:
        stmt = _members_stmt(bool(roles), after is not None, limit is not None, bool(offset))
        params: dict[str, Any] = {"app": sdkappid, "grp": group_id, "roles": list(roles),
                                  "limit": limit, "offset": offset}
        if after is not None:
            params["after_time"], params["after_member"] = after
        async with self.db.read() as conn:
            return [_member_from_row(row) for row in await conn.execute(stmt, params)
                    if row.next_msg_seq is not None]

    async def get_member_roles(self, sdkappid: int, group_id: str,
                               accounts_: Sequence[str]) -> dict[str, str]:
        if not accounts_:
            return {}
        async with self.db.read() as conn:
            rows = await conn.execute(_MEMBER_ROLES, {"app": sdkappid, "grp": group_id,
                                                      "accounts": list(set(accounts_))})
            return {r.member: r.role for r in rows}

    # --- membership writes ----------------------------------------------------------------
    #
    # member_num stays exact because every change to a group's roster also updates the
    # group row in the same transaction, which takes that row's lock (SQLite: the process
    # write lock). Adding members takes it last (see add_members); removals and message
    # writes take it first. Adds lock only keys they create, which no other writer waits
    # on, so the two orders cannot deadlock.

    async def _lock_group(self, conn: AsyncConnection, sdkappid: int, group_id: str) -> Group:
        row = (await conn.execute(self._lock_stmt, {"app": sdkappid, "grp": group_id})).first()
        if row is None:
            raise _gone(group_id)
        return _group_from_row(row)

    async def add_members(self, sdkappid: int, group_id: str,
                          prepare: Callable[[Group], NewMembers], *,
                          full_error: bool = False) -> dict[str, int]:
        """Add members in one transaction, holding the group row's lock only at its end.

        The rows go in first (sorted, so concurrent imports take key locks in one order),
        then the count is bumped with UPDATE ... RETURNING, which is where the group row
        lock is taken: imports into one group overlap everything but their last statement
        and the commit. Only then is the cap checked against the true count; members past
        it are taken out again, in request order, inside the same transaction.
        """
        key = {"app": sdkappid, "grp": group_id}
        sqlite = self.db.is_sqlite
        async with self.db.write() as conn:
            row = (await conn.execute(_GET_GROUP, key)).first()
            if row is None:
                raise _gone(group_id)
            group = _group_from_row(row)
            members = prepare(group)
            if not members.accounts:
                return {}
            exceptions = {account: bool(is_member) for account, is_member in await conn.execute(
                _EXCEPTIONS_SQLITE if sqlite else _EXCEPTIONS_PG,
                {**key, "accounts": _encode_json(members.accounts) if sqlite
                 else members.accounts},
            )}
            results: dict[str, int] = {}
            take: list[int] = []
            for i, account in enumerate(members.accounts):
                is_member = exceptions.get(account)
                if is_member is None:
                    take.append(i)
                else:
                    results[account] = MemberResult.ALREADY_MEMBER if is_member \
                        else MemberResult.FAILED
            if not take:
                return results
            inserted = await self._insert_members(conn, key, members, take,
                                                  group.next_msg_seq - 1)
            counted = (await conn.execute(
                _COUNT_MEMBERS, {**key, "added": len(inserted)})).first()
            if counted is None:  # dismissed while we inserted
                raise _gone(group_id)
            added = [members.accounts[i] for i in take if members.accounts[i] in inserted]
            cap = counted.max_member_num
            if cap is not None and counted.member_num > cap:
                room = max(cap - (counted.member_num - len(added)), 0)
                if full_error and room == 0:
                    raise errors.GroupFull(f"group {group_id!r} is full ({cap} members)")
                await self._take_out(conn, key, added[room:])
                added = added[:room]
            kept = set(added)
            for i in take:
                account = members.accounts[i]
                if account in kept:
                    results[account] = MemberResult.ADDED
                elif account in inserted:
                    results[account] = MemberResult.FAILED  # past the cap
                else:  # a concurrent request made it a member first
                    results[account] = MemberResult.ALREADY_MEMBER
        return {a: results[a] for a in members.accounts}

    async def _insert_members(self, conn: AsyncConnection, key: dict[str, Any],
                              members: NewMembers, take: list[int],
                              msg_count: int) -> set[str]:
        """Insert the chosen rows (sorted by account); returns the accounts inserted."""
        take = sorted(take, key=lambda i: members.accounts[i])
        # The read mark leaves the requested count (clamped to the message count) unread.
        accounts = [members.accounts[i] for i in take]
        roles = [members.roles[i] for i in take]
        join_times = [members.join_times[i] for i in take]
        msg_seqs = [msg_count - min(members.unread[i], msg_count) for i in take]
        if self.db.is_sqlite:
            rows = await conn.execute(_INSERT_MEMBERS_SQLITE, {**key, "rows": _encode_json(
                list(zip(accounts, roles, join_times, msg_seqs, strict=True)))})
        else:
            rows = await conn.execute(_INSERT_MEMBERS_PG, {
                **key, "members": accounts, "roles": roles, "join_times": join_times,
                "msg_seqs": msg_seqs})
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

    async def delete_members(self, sdkappid: int, group_id: str,
                             accounts_: Sequence[str]) -> list[str]:
        key = and_(group_members.c.sdkappid == sdkappid, group_members.c.group_id == group_id)
        async with self.db.write() as conn:
            await self._lock_group(conn, sdkappid, group_id)
            # RETURNING: two concurrent deletes of one member must not both count it.
            present = list((await conn.execute(
                delete(group_members)
                .where(key, group_members.c.member.in_(set(accounts_)))
                .returning(group_members.c.member)
            )).scalars())
            if present:
                await conn.execute(
                    update(groups).where(*_group_key(sdkappid, group_id))
                    .values(member_num=groups.c.member_num - len(present))
                )
        return present

    async def set_unread(self, sdkappid: int, group_id: str, account: str,
                         unread: int) -> bool:
        async with self.db.write() as conn:
            msg_count = (await self._lock_group(conn, sdkappid, group_id)).next_msg_seq - 1
            done = await conn.execute(
                update(group_members)
                .where(group_members.c.sdkappid == sdkappid,
                       group_members.c.group_id == group_id,
                       group_members.c.member == account)
                .values(msg_seq=msg_count - min(unread, msg_count))
            )
        return done.rowcount > 0

    # --- messages -----------------------------------------------------------------------

    async def append_message(self, sdkappid: int, group_id: str, message: GroupMessage,
                             *, keep: bool, sender_must_be_member: bool) -> int | None:
        try:
            async with self.db.write() as conn:
                # The UPDATE takes the group row lock and hands out the seq in one go.
                next_seq = (await conn.execute(
                    update(groups).where(*_group_key(sdkappid, group_id))
                    .values(next_msg_seq=groups.c.next_msg_seq + 1,
                            last_msg_time=message.send_time)
                    .returning(groups.c.next_msg_seq)
                )).scalar()
                if next_seq is None:
                    raise errors.GroupNotFound(f"group {group_id!r} does not exist")
                seq = next_seq - 1
                if message.from_account:
                    # The sender's read mark moves with the message: its own message is not
                    # unread for it, while everyone else's count grows without a write.
                    sender = await conn.execute(
                        update(group_members)
                        .where(group_members.c.sdkappid == sdkappid,
                               group_members.c.group_id == group_id,
                               group_members.c.member == message.from_account)
                        .values(msg_seq=group_members.c.msg_seq + 1,
                                last_send_msg_time=message.send_time)
                    )
                    if sender_must_be_member and sender.rowcount == 0:
                        raise _NotAMember
                if keep:
                    await conn.execute(group_messages.insert().values(
                        _message_values(sdkappid, group_id, seq, message)))
        except _NotAMember:
            return None
        return seq

    async def import_messages(self, sdkappid: int, group_id: str,
                              messages: Sequence[GroupMessage], *,
                              now: int) -> list[int | None]:
        async with self.db.write() as conn:
            group = await self._lock_group(conn, sdkappid, group_id)
            next_seq, last_time = group.next_msg_seq, group.last_msg_time
            seqs: list[int | None] = []
            rows = []
            for m in messages:
                if not (group.create_time < m.send_time < now and m.send_time > last_time):
                    seqs.append(None)
                    continue
                seqs.append(next_seq)
                rows.append(_message_values(sdkappid, group_id, next_seq, m))
                next_seq, last_time = next_seq + 1, m.send_time
            if rows:
                await conn.execute(group_messages.insert(), rows)
                await conn.execute(
                    update(groups).where(*_group_key(sdkappid, group_id))
                    .values(next_msg_seq=next_seq, last_msg_time=last_time)
                )
                # Tencent: importing messages leaves every member with nothing unread. The
                # one O(members) write in messaging, and it only happens during migrations.
                await conn.execute(
                    update(group_members)
                    .where(group_members.c.sdkappid == sdkappid,
                           group_members.c.group_id == group_id)
                    .values(msg_seq=next_seq - 1)
                )
        return seqs


class _NotAMember(Exception):
    """Rolls back append_message when the sender must be, and is not, a member."""


def _gone(group_id: str) -> errors.GroupNotFound:
    return errors.GroupNotFound(f"group {group_id!r} does not exist or has been dismissed")


def _group_key(sdkappid: int, group_id: str) -> tuple[Any, Any]:
    return groups.c.sdkappid == sdkappid, groups.c.group_id == group_id


def _message_values(sdkappid: int, group_id: str, seq: int,
                    message: GroupMessage) -> dict[str, Any]:
    return {
        "sdkappid": sdkappid,
        "group_id": group_id,
        "msg_seq": seq,
        "from_account": message.from_account,
        "send_time": message.send_time,
        "random": message.random,
        "msg_body": message.body,
    }
