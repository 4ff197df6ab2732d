"""Mutes, bans and what moderation does to group history (recall, delete by sender).

Mutes and bans live in ``group_restrictions`` (an AVChatRoom has no member rows, and a
member muted in any group stays muted when it leaves and joins again). A mute is also
written to the member's ``shut_up_until``, which get_group_member_info shows; a sender is
muted while either says so. History reads page ``group_messages`` by its primary key
(sdkappid, group_id, msg_seq), newest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, delete, select, union_all, update

from opentim.storage.base import SenderState, StoredGroupMessage
from opentim.storage.database import Database
from opentim.storage.pg_reader import prebuilt
from opentim.storage.schema import group_members, group_messages, group_restrictions

_R = group_restrictions.c
_M = group_members.c
_G = group_messages.c


def _member(column: Any) -> Any:
    return select(column).where(_M.sdkappid == bindparam("app"), _M.group_id == bindparam("grp"),
                                _M.member == bindparam("acc")).scalar_subquery()


def _restriction(column: Any) -> Any:
    return select(column).where(_R.sdkappid == bindparam("app"), _R.group_id == bindparam("grp"),
                                _R.account == bindparam("acc")).scalar_subquery()


# One round trip, four primary-key probes: what a send (or a join) needs to know.
_SENDER_STATE = prebuilt(select(
    _member(_M.role).label("role"),
    _member(_M.shut_up_until).label("shut_up_until"),
    _restriction(_R.muted_until).label("muted_until"),
    _restriction(_R.banned_until).label("banned_until"),
))
_MUTED = prebuilt(union_all(
    select(_R.account.label("account"), _R.muted_until.label("until")).where(
        _R.sdkappid == bindparam("app"), _R.group_id == bindparam("grp"),
        _R.muted_until > bindparam("now")),
    select(_M.member.label("account"), _M.shut_up_until.label("until")).where(
        _M.sdkappid == bindparam("app"), _M.group_id == bindparam("grp"),
        _M.shut_up_until > bindparam("now")),
))
_BANNED_PAGE = prebuilt(
    select(_R.account, _R.banned_until).where(
        _R.sdkappid == bindparam("app"), _R.group_id == bindparam("grp"),
        _R.banned_until > bindparam("now"))
    .order_by(_R.banned_until, _R.account).limit(bindparam("limit")).offset(bindparam("offset")))
_BANS = prebuilt(select(_R.account, _R.banned_until).where(
    _R.sdkappid == bindparam("app"), _R.group_id == bindparam("grp"),
    _R.banned_until > bindparam("now")).order_by(_R.banned_until).limit(bindparam("limit")))
_HISTORY_COLUMNS = (_G.msg_seq, _G.from_account, _G.send_time, _G.random, _G.msg_body,
                    _G.removed, _G.cloud_custom_data, _G.msg_priority)
_HISTORY = prebuilt(
    select(*_HISTORY_COLUMNS).where(
        _G.sdkappid == bindparam("app"), _G.group_id == bindparam("grp"),
        _G.msg_seq >= bindparam("lo"), _G.msg_seq <= bindparam("hi"))
    .order_by(_G.msg_seq.desc()))


def _stored(row: Any) -> StoredGroupMessage:
    return StoredGroupMessage(row.msg_seq, row.from_account, row.send_time, row.random,
                              row.msg_body, row.removed, row.cloud_custom_data or "",
                              row.msg_priority or "Normal")


def _key(table: Any, sdkappid: int, group_id: str) -> Any:
    return and_(table.c.sdkappid == sdkappid, table.c.group_id == group_id)


class SqlModeration:
    """The ModerationStore on one database (see ``base.ModerationStore``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def sender_state(self, sdkappid: int, group_id: str, account: str) -> SenderState:
        async with self.db.read() as conn:
            row = (await conn.execute(_SENDER_STATE, {"app": sdkappid, "grp": group_id,
                                                      "acc": account})).one()
        return SenderState(row.role, max(row.shut_up_until or 0, row.muted_until or 0),
                           row.banned_until or 0)

    async def mute(self, sdkappid: int, group_id: str, accounts: Sequence[str],
                   until: int, *, now: int) -> None:
        accounts = sorted(set(accounts))
        if not accounts:
            return
        async with self.db.write() as conn:
            if until:
                stmt: Any = self.db.insert(group_restrictions)
                await conn.execute(stmt.on_conflict_do_update(
                    index_elements=[_R.sdkappid, _R.group_id, _R.account],
                    set_={"muted_until": stmt.excluded.muted_until}),
                    [{"sdkappid": sdkappid, "group_id": group_id, "account": a,
                      "muted_until": until, "banned_until": 0, "ban_description": ""}
                     for a in accounts])
            else:
                await conn.execute(update(group_restrictions).where(
                    _key(group_restrictions, sdkappid, group_id), _R.account.in_(accounts))
                    .values(muted_until=0))
                await self._prune(conn, sdkappid, group_id, accounts, now)
            await conn.execute(update(group_members).where(
                _key(group_members, sdkappid, group_id), _M.member.in_(accounts))
                .values(shut_up_until=until))

    async def muted(self, sdkappid: int, group_id: str, *, now: int) -> list[tuple[str, int]]:
        async with self.db.read() as conn:
            rows = list(await conn.execute(_MUTED, {"app": sdkappid, "grp": group_id,
                                                    "now": now}))
        until: dict[str, int] = {}
        for account, value in rows:
            until[account] = max(until.get(account, 0), value)
        return sorted(until.items())

    async def ban(self, sdkappid: int, group_id: str, accounts: Sequence[str], until: int,
                  description: str) -> None:
        accounts = sorted(set(accounts))
        if not accounts:
            return
        async with self.db.write() as conn:
            stmt: Any = self.db.insert(group_restrictions)
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=[_R.sdkappid, _R.group_id, _R.account],
                set_={"banned_until": stmt.excluded.banned_until,
                      "ban_description": stmt.excluded.ban_description}),
                [{"sdkappid": sdkappid, "group_id": group_id, "account": a,
                  "muted_until": 0, "banned_until": until, "ban_description": description}
                 for a in accounts])

    async def unban(self, sdkappid: int, group_id: str, accounts: Sequence[str], *,
                    now: int) -> None:
        accounts = sorted(set(accounts))
        if not accounts:
            return
        async with self.db.write() as conn:
            await conn.execute(update(group_restrictions).where(
                _key(group_restrictions, sdkappid, group_id), _R.account.in_(accounts))
                .values(banned_until=0, ban_description=""))
            await self._prune(conn, sdkappid, group_id, accounts, now)

    async def banned_page(self, sdkappid: int, group_id: str, *, now: int, limit: int,
                          offset: int) -> list[tuple[str, int]]:
        async with self.db.read() as conn:
            rows = await conn.execute(_BANNED_PAGE, {"app": sdkappid, "grp": group_id,
                                                     "now": now, "limit": limit,
                                                     "offset": offset})
            return [(r.account, r.banned_until) for r in rows]

    async def bans(self, sdkappid: int, group_id: str, *, now: int,
                   limit: int) -> dict[str, int]:
        async with self.db.read() as conn:
            rows = await conn.execute(_BANS, {"app": sdkappid, "grp": group_id, "now": now,
                                              "limit": limit})
            return {r.account: r.banned_until for r in rows}

    async def _prune(self, conn: Any, sdkappid: int, group_id: str,
                     accounts: Sequence[str], now: int) -> None:
        """Rows that restrict nothing any more go."""
        await conn.execute(delete(group_restrictions).where(
            _key(group_restrictions, sdkappid, group_id), _R.account.in_(accounts),
            _R.muted_until <= now, _R.banned_until <= now))

    # --- history ------------------------------------------------------------------------

    async def history(self, sdkappid: int, group_id: str, *, lo: int,
                      hi: int) -> list[StoredGroupMessage]:
        async with self.db.read() as conn:
            rows = await conn.execute(_HISTORY, {"app": sdkappid, "grp": group_id,
                                                 "lo": lo, "hi": hi})
            return [_stored(r) for r in rows]

    async def messages(self, sdkappid: int, group_id: str,
                       seqs: Sequence[int]) -> dict[int, StoredGroupMessage]:
        if not seqs:
            return {}
        async with self.db.read() as conn:
            rows = await conn.execute(select(*_HISTORY_COLUMNS).where(
                _key(group_messages, sdkappid, group_id), _G.msg_seq.in_(sorted(set(seqs)))))
            return {r.msg_seq: _stored(r) for r in rows}

    async def mark_removed(self, sdkappid: int, group_id: str, seqs: Sequence[int],
                           how: int) -> set[int]:
        """Mark kept messages removed (``how``: 1 deleted, 2 recalled); returns the seqs
        changed. A removed message keeps its row (a placeholder) and loses its body."""
        if not seqs:
            return set()
        async with self.db.write() as conn:
            rows = await conn.execute(update(group_messages).where(
                _key(group_messages, sdkappid, group_id), _G.msg_seq.in_(sorted(set(seqs))),
                _G.removed == 0).values(removed=how, msg_body=[])
                .returning(_G.msg_seq))
            return set(rows.scalars())

    async def remove_by_sender(self, sdkappid: int, group_id: str, account: str, *,
                               from_seq: int, how: int) -> int:
        """Mark the kept messages of ``account`` with MsgSeq >= ``from_seq`` removed
        (``how`` as in ``mark_removed``); returns how many."""
        async with self.db.write() as conn:
            done = await conn.execute(update(group_messages).where(
                _key(group_messages, sdkappid, group_id), _G.from_account == account,
                _G.msg_seq >= from_seq, _G.removed == 0).values(removed=how, msg_body=[]))
            return int(done.rowcount or 0)


__all__ = ["SqlModeration"]
