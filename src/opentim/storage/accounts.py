"""Accounts: import, existence checks, profiles, and deletion with what they hold."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, delete, select, update

from opentim.storage.base import AccountProfile, Portrait
from opentim.storage.database import Database, Executor
from opentim.storage.pg_reader import prebuilt
from opentim.storage.rows import GROUP_KEY
from opentim.storage.schema import accounts, group_members, groups

_PROFILES = prebuilt(select(accounts.c.user_id, accounts.c.nick, accounts.c.face_url).where(
    accounts.c.sdkappid == bindparam("app"),
    accounts.c.user_id.in_(bindparam("accounts", expanding=True))))
# portrait_get: every tag of up to 100 accounts in this one statement (primary key lookups).
_PORTRAITS = prebuilt(select(accounts.c.user_id, accounts.c.nick, accounts.c.face_url,
                             accounts.c.profile).where(
    accounts.c.sdkappid == bindparam("app"),
    accounts.c.user_id.in_(bindparam("accounts", expanding=True))))
_UNCOUNT_MEMBERS = update(groups).where(*GROUP_KEY).values(
    member_num=groups.c.member_num - bindparam("left"))


class SqlAccounts:
    """The AccountStore on one database."""


    def __init__(self, db: Database) -> None:
        self.db = db
        self._dialect = db.dialect

    async def import_profiles(self, sdkappid: int, profiles: Sequence[AccountProfile],
                              *, now: int) -> None:
        """Create missing accounts, update the given fields of existing ones."""
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
        sql, params = self._dialect.existing(sdkappid, list(set(user_ids)))
        rows = await conn.execute(sql, params)
        return set(rows.scalars())

    async def existing(self, sdkappid: int, user_ids: Sequence[str]) -> set[str]:
        async with self.db.read() as conn:
            return await self._existing(conn, sdkappid, user_ids)

    async def mark_kicked(self, sdkappid: int, user_id: str, *, at: int) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(
                update(accounts).where(accounts.c.sdkappid == sdkappid,
                                       accounts.c.user_id == user_id)
                .values(kicked_at=at))
            return bool(result.rowcount)

    async def kicked_at(self, sdkappid: int, user_id: str) -> int:
        async with self.db.read() as conn:
            found = (await conn.execute(
                select(accounts.c.kicked_at).where(accounts.c.sdkappid == sdkappid,
                                                   accounts.c.user_id == user_id))).scalar()
            return int(found or 0)

    async def delete(self, sdkappid: int, user_ids: Sequence[str]) -> set[str]:
        """Delete accounts with everything they hold in groups; returns those that existed.

        One transaction: the account rows, their member rows (roles, read marks and so
        unread counts, member data) with each group's ``member_num``, and their ownerships
        (``owner`` becomes NULL; the groups stay). Member rows go for every requested UserID,
        existing or not, so deleting again also clears a membership left by a write that
        raced an earlier deletion. Messages they sent stay in the groups' history.

        Groups are locked first, in ID order, as every other roster removal does (see
        "membership writes" in members.py).
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
                await conn.execute(self._dialect.locking(
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
            # ix_groups_owner: (sdkappid, owner)
            await conn.execute(
                update(groups).where(groups.c.sdkappid == sdkappid, groups.c.owner.in_(ids))
                .values(owner=None))
        return existed

    async def profiles(self, sdkappid: int,
                       user_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(nick, face_url) of each existing account."""
        if not user_ids:
            return {}
        async with self.db.read() as conn:
            rows = await conn.execute(_PROFILES, {"app": sdkappid,
                                                  "accounts": list(set(user_ids))})
            return {r.user_id: (r.nick, r.face_url) for r in rows}

    async def portraits(self, sdkappid: int, user_ids: Sequence[str]) -> dict[str, Portrait]:
        """The whole profile of each existing account: one SELECT by primary key."""
        if not user_ids:
            return {}
        async with self.db.read() as conn:
            rows = await conn.execute(_PORTRAITS, {"app": sdkappid,
                                                   "accounts": list(set(user_ids))})
            # (fetched at once and unpacked as tuples: a fetch and attribute access per row
            # cost more, ×100)
            return {user_id: Portrait(nick, face_url, profile or {})
                    for user_id, nick, face_url, profile in rows.all()}

    async def set_portrait(self, sdkappid: int, user_id: str, *, nick: str | None,
                           face_url: str | None, tags: Mapping[str, str | int]) -> bool:
        """Set some tags of an existing account; False when it does not exist.

        The ``profile`` JSON is read under a row lock (PostgreSQL; SQLite's write lock
        serialises writers anyway), merged and written back in the same transaction, so
        two calls setting different tags of one account both persist.
        """
        key = (accounts.c.sdkappid == sdkappid, accounts.c.user_id == user_id)
        async with self.db.write() as conn:
            row = (await conn.execute(
                self._dialect.locking(select(accounts.c.profile).where(*key)))).first()
            if row is None:
                return False
            values: dict[str, Any] = {}
            if nick is not None:
                values["nick"] = nick
            if face_url is not None:
                values["face_url"] = face_url
            if tags:
                values["profile"] = {**(row.profile or {}), **tags}
            if values:
                await conn.execute(update(accounts).where(*key).values(values))
        return True
