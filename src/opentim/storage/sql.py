"""The SQL implementation of the storage interfaces (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, and_, delete, func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from opentim import errors
from opentim.domain.apps import App, Edition
from opentim.domain.groups import Group, GroupType, Member, MemberResult, Role
from opentim.storage.base import AccountProfile, GroupPage
from opentim.storage.database import Database
from opentim.storage.schema import accounts, apps, group_members, groups


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
    return Member(
        account=row.member,
        role=Role(row.role),
        join_time=row.join_time,
        msg_seq=row.msg_seq,
        msg_flag=row.msg_flag,
        last_send_msg_time=row.last_send_msg_time,
        shut_up_until=row.shut_up_until,
        name_card=row.name_card,
        unread_msg_num=row.unread_msg_num,
        app_member_defined_data=dict(row.app_member_defined_data or {}),
    )


def _member_values(sdkappid: int, group_id: str, member: Member) -> dict[str, Any]:
    return {
        "sdkappid": sdkappid,
        "group_id": group_id,
        "member": member.account,
        "role": member.role.value,
        "join_time": member.join_time,
        "msg_seq": member.msg_seq,
        "msg_flag": member.msg_flag,
        "last_send_msg_time": member.last_send_msg_time,
        "shut_up_until": member.shut_up_until,
        "name_card": member.name_card,
        "unread_msg_num": member.unread_msg_num,
        "app_member_defined_data": member.app_member_defined_data or None,
    }


class SqlStore:
    """AppStore, AccountStore and GroupStore on one SQLAlchemy database."""

    def __init__(self, db: Database) -> None:
        self.db = db

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
            row = (await conn.execute(select(apps).where(apps.c.sdkappid == sdkappid))).first()
        return None if row is None else _app_from_row(row)

    async def list_apps(self) -> list[App]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(apps).order_by(apps.c.sdkappid))).all()
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

    async def _existing(self, conn: AsyncConnection, sdkappid: int,
                        user_ids: Sequence[str]) -> set[str]:
        if not user_ids:
            return set()
        rows = await conn.execute(
            select(accounts.c.user_id).where(
                accounts.c.sdkappid == sdkappid, accounts.c.user_id.in_(set(user_ids))
            )
        )
        return set(rows.scalars())

    async def existing_accounts(self, sdkappid: int, user_ids: Sequence[str]) -> set[str]:
        async with self.db.read() as conn:
            return await self._existing(conn, sdkappid, user_ids)

    async def delete_accounts(self, sdkappid: int, user_ids: Sequence[str]) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                delete(accounts).where(
                    accounts.c.sdkappid == sdkappid, accounts.c.user_id.in_(set(user_ids))
                )
            )

    async def get_profiles(self, sdkappid: int,
                           user_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        if not user_ids:
            return {}
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(accounts.c.user_id, accounts.c.nick, accounts.c.face_url).where(
                    accounts.c.sdkappid == sdkappid, accounts.c.user_id.in_(set(user_ids))
                )
            )
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
                        [_member_values(group.sdkappid, group.group_id, m) for m in members],
                    )
        except IntegrityError as exc:
            raise errors.GroupIdInUse(f"group ID {group.group_id!r} is already in use") from exc
        group.member_num = len(members)

    async def get_groups(self, sdkappid: int, group_ids: Sequence[str]) -> dict[str, Group]:
        if not group_ids:
            return {}
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(groups).where(
                    groups.c.sdkappid == sdkappid, groups.c.group_id.in_(set(group_ids))
                )
            )
            return {row.group_id: _group_from_row(row) for row in rows}

    async def destroy_group(self, sdkappid: int, group_id: str) -> bool:
        key = (groups.c.sdkappid == sdkappid, groups.c.group_id == group_id)
        async with self.db.write() as conn:
            gone = await conn.execute(delete(groups).where(*key))
            await conn.execute(
                delete(group_members).where(
                    group_members.c.sdkappid == sdkappid, group_members.c.group_id == group_id
                )
            )
        return gone.rowcount > 0

    async def list_groups(self, sdkappid: int, *, limit: int, offset: int,
                          group_type: GroupType | None) -> GroupPage:
        where = [groups.c.sdkappid == sdkappid]
        if group_type is not None:
            where.append(groups.c.type == group_type.value)
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).where(*where))).scalar_one()
            ids = list((await conn.execute(
                select(groups.c.group_id).where(*where).order_by(groups.c.group_id)
                .limit(limit).offset(offset)
            )).scalars())
        following = offset + len(ids)
        return GroupPage(ids, total, following if following < total else 0)

    async def get_members(self, sdkappid: int, group_id: str, *, limit: int | None,
                          offset: int = 0, after: tuple[int, str] | None = None,
                          roles: Sequence[str] = ()) -> list[Member]:
        stmt = select(group_members).where(
            group_members.c.sdkappid == sdkappid, group_members.c.group_id == group_id
        )
        if roles:
            stmt = stmt.where(group_members.c.role.in_(roles))
        if after is not None:
            stmt = stmt.where(tuple_(group_members.c.join_time, group_members.c.member) > after)
        stmt = stmt.order_by(group_members.c.join_time, group_members.c.member)
        if limit is not None:
            stmt = stmt.limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        async with self.db.read() as conn:
            return [_member_from_row(row) for row in await conn.execute(stmt)]

    async def get_member_roles(self, sdkappid: int, group_id: str,
                               accounts_: Sequence[str]) -> dict[str, str]:
        if not accounts_:
            return {}
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(group_members.c.member, group_members.c.role).where(
                    group_members.c.sdkappid == sdkappid,
                    group_members.c.group_id == group_id,
                    group_members.c.member.in_(set(accounts_)),
                )
            )
            return {r.member: r.role for r in rows}

    async def add_members(self, sdkappid: int, group_id: str, members: Sequence[Member],
                          *, cap: int | None, full_error: bool = False) -> dict[str, int]:
        wanted = [m.account for m in members]
        async with self.db.write() as conn:
            group_row = (await conn.execute(self.db.locking(
                select(groups.c.member_num).where(
                    groups.c.sdkappid == sdkappid, groups.c.group_id == group_id
                )
            ))).first()
            if group_row is None:
                raise errors.GroupNotFound(f"group {group_id!r} does not exist")
            known = await self._existing(conn, sdkappid, wanted)
            already = set((await conn.execute(
                select(group_members.c.member).where(
                    group_members.c.sdkappid == sdkappid,
                    group_members.c.group_id == group_id,
                    group_members.c.member.in_(known),
                )
            )).scalars()) if known else set()
            room = None if cap is None else max(cap - group_row.member_num, 0)
            if full_error and room == 0 and any(
                m.account in known and m.account not in already for m in members
            ):
                raise errors.GroupFull(f"group {group_id!r} is full ({cap} members)")
            results: dict[str, int] = {}
            rows = []
            for m in members:
                if m.account in results:
                    continue  # first occurrence in a request decides (documented)
                if m.account in already:
                    results[m.account] = MemberResult.ALREADY_MEMBER
                elif m.account not in known or (room is not None and len(rows) >= room):
                    results[m.account] = MemberResult.FAILED
                else:
                    results[m.account] = MemberResult.ADDED
                    rows.append(_member_values(sdkappid, group_id, m))
            if rows:
                await conn.execute(
                    self.db.insert(group_members).on_conflict_do_nothing(), rows
                )
                await conn.execute(
                    update(groups)
                    .where(groups.c.sdkappid == sdkappid, groups.c.group_id == group_id)
                    .values(member_num=groups.c.member_num + len(rows))
                )
        return results

    async def delete_members(self, sdkappid: int, group_id: str,
                             accounts_: Sequence[str]) -> list[str]:
        key = and_(group_members.c.sdkappid == sdkappid, group_members.c.group_id == group_id)
        async with self.db.write() as conn:
            present = list((await conn.execute(
                select(group_members.c.member).where(
                    key, group_members.c.member.in_(set(accounts_))
                )
            )).scalars())
            if present:
                await conn.execute(
                    delete(group_members).where(key, group_members.c.member.in_(present))
                )
                await conn.execute(
                    update(groups)
                    .where(groups.c.sdkappid == sdkappid, groups.c.group_id == group_id)
                    .values(member_num=groups.c.member_num - len(present))
                )
        return present
