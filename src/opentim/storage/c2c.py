"""One-to-one messages: history per conversation, unread counters and read marks.

``c2c_messages`` is keyed (sdkappid, user_a, user_b, msg_time, msg_seq, msg_random): the
conversation's two accounts in order, then the message's place in its history. A roam page
is one range read of that key, a withdrawal one row lookup (the MsgKey holds the rest of
it), so both cost the same with 10 thousand or 10 million stored messages.

``c2c_reads`` holds, per (account, peer), the unread counter and the read mark: a send that
counts adds one (an upsert), ``set_read`` recounts from the history after the mark, and a
withdrawal of an unread message takes one off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, tuple_, update

from opentim.domain import c2c as rules
from opentim.storage.base import C2CMessage, C2CRow, WithdrawOutcome
from opentim.storage.database import Database
from opentim.storage.pg_reader import prebuilt
from opentim.storage.schema import c2c_messages, c2c_reads

_M = c2c_messages.c
# Pages of hidden rows read past before a roam page is answered as it is (Complete 0).
_HIDDEN_READS = 8
_R = c2c_reads.c

_PAIR = (_M.sdkappid == bindparam("app"), _M.user_a == bindparam("a"),
         _M.user_b == bindparam("b"))
_COLUMNS = (_M.from_account, _M.msg_time, _M.msg_seq, _M.msg_random, _M.msg_body,
            _M.cloud_custom_data, _M.flag_bits, _M.sender_roam)
_ORDER = (_M.msg_time.desc(), _M.msg_seq.desc(), _M.msg_random.desc())
_RANGE = (_M.msg_time >= bindparam("min_time"), _M.msg_time <= bindparam("max_time"))
_ROAM_FIRST = prebuilt(select(*_COLUMNS).where(*_PAIR, *_RANGE).order_by(*_ORDER)
                       .limit(bindparam("limit")))
# (msg_time, msg_seq, msg_random) before the LastMsgKey's, spelled out so that both
# databases read it as a range of the key.
_BEFORE = or_(_M.msg_time < bindparam("t"),
              and_(_M.msg_time == bindparam("t"),
                   or_(_M.msg_seq < bindparam("s"),
                       and_(_M.msg_seq == bindparam("s"), _M.msg_random < bindparam("r")))))
# (msg_time <= t bounds the index range even when a client keeps its first MaxTime.)
_ROAM_NEXT = prebuilt(select(*_COLUMNS).where(*_PAIR, *_RANGE, _M.msg_time <= bindparam("t"),
                                              _BEFORE).order_by(*_ORDER)
                      .limit(bindparam("limit")))
_READS = prebuilt(select(_R.account, _R.peer, _R.read_time, _R.unread).where(
    _R.sdkappid == bindparam("app"), _R.account.in_(bindparam("accounts", expanding=True)),
    _R.peer.in_(bindparam("peers", expanding=True))))
_UNREAD_ALL = prebuilt(select(func.coalesce(func.sum(_R.unread), 0)).where(
    _R.sdkappid == bindparam("app"), _R.account == bindparam("account")))
_UNREAD_OF = prebuilt(select(_R.peer, _R.unread).where(
    _R.sdkappid == bindparam("app"), _R.account == bindparam("account"),
    _R.peer.in_(bindparam("peers", expanding=True))))


def _values(sdkappid: int, m: C2CMessage, to_account: str) -> dict[str, object]:
    a, b = rules.pair(m.from_account, to_account)
    return {"sdkappid": sdkappid, "user_a": a, "user_b": b, "msg_time": m.msg_time,
            "msg_seq": m.msg_seq, "msg_random": m.msg_random, "from_account": m.from_account,
            "msg_body": m.body, "cloud_custom_data": m.cloud_custom_data, "flag_bits": 0,
            "counts_unread": m.counts_unread, "sender_roam": m.sender_roam}


class SqlC2C:
    """The C2CStore on one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._dialect = db.dialect

    async def store(self, sdkappid: int, message: C2CMessage,
                    to_accounts: Sequence[str]) -> list[str]:
        """Keep one message for each recipient; returns the recipients it was new for."""
        if not to_accounts:
            return []
        new: Any = self._dialect.insert(c2c_messages)
        insert = new.on_conflict_do_nothing().returning(_M.user_a, _M.user_b)
        async with self.db.write() as conn:
            rows = (await conn.execute(
                insert, [_values(sdkappid, message, to) for to in to_accounts])).all()
            stored = {(r.user_a, r.user_b) for r in rows}
            fresh = [to for to in to_accounts
                     if rules.pair(message.from_account, to) in stored]
            counted = [to for to in fresh if to != message.from_account]
            if counted and message.counts_unread:
                upsert: Any = self._dialect.insert(c2c_reads)
                upsert = upsert.on_conflict_do_update(
                    index_elements=[_R.sdkappid, _R.account, _R.peer],
                    set_={"unread": c2c_reads.c.unread + 1})
                await conn.execute(upsert, [
                    {"sdkappid": sdkappid, "account": to, "peer": message.from_account,
                     "read_time": 0, "unread": 1} for to in counted])
        return fresh

    async def roam(self, sdkappid: int, operator: str, peer: str, *, min_time: int,
                   max_time: int, before: tuple[int, int, int] | None,
                   limit: int) -> tuple[list[C2CRow], bool]:
        """The newest ``limit`` messages of a conversation in [min_time, max_time] (before
        the ``before`` key, (seq, random, time), if given) that the operator may see,
        newest first; and whether the range was read to its end."""
        a, b = rules.pair(operator, peer)
        params: dict[str, object] = {"app": sdkappid, "a": a, "b": b, "min_time": min_time,
                                     "max_time": max_time, "limit": limit}
        statement = _ROAM_FIRST
        if before is not None:
            params.update(t=before[2], s=before[0], r=before[1])
            statement = _ROAM_NEXT
        out: list[C2CRow] = []
        # Rows hidden from the operator (SyncOtherMachine 2, read by their sender) are
        # skipped: read on past them, a bounded number of times.
        for _ in range(_HIDDEN_READS):
            async with self.db.read() as conn:
                rows = (await conn.execute(statement, params)).all()
            for r in rows:
                if rules.visible_to(operator, r.from_account, r.sender_roam):
                    out.append(C2CRow(
                        r.from_account, peer if r.from_account == operator else operator,
                        r.msg_time, r.msg_seq, r.msg_random, r.msg_body, r.cloud_custom_data,
                        r.flag_bits))
            if len(rows) < limit:
                return out[:limit], True
            if len(out) >= limit:
                return out[:limit], False
            last = rows[-1]
            params.update(t=last.msg_time, s=last.msg_seq, r=last.msg_random)
            statement = _ROAM_NEXT
        return out, False

    async def read_times(self, sdkappid: int, accounts: Sequence[str],
                         peers: Sequence[str]) -> dict[tuple[str, str], int]:
        """(account, peer) -> the account's read mark in its conversation with peer."""
        async with self.db.read() as conn:
            rows = await conn.execute(_READS, {"app": sdkappid, "accounts": list(accounts),
                                               "peers": list(peers)})
            return {(r.account, r.peer): r.read_time for r in rows}

    async def withdraw(self, sdkappid: int, from_account: str, to_account: str,
                       seq: int, random: int, time: int) -> int:
        """Flag a stored message withdrawn (its body and CloudCustomData go); an unread
        one leaves the recipient's unread count."""
        a, b = rules.pair(from_account, to_account)
        key = (_M.sdkappid == sdkappid, _M.user_a == a, _M.user_b == b, _M.msg_time == time,
               _M.msg_seq == seq, _M.msg_random == random)
        async with self.db.write() as conn:
            row = (await conn.execute(self.db.locking(
                select(_M.from_account, _M.flag_bits, _M.counts_unread).where(*key)))).first()
            if row is None or row.from_account != from_account:
                return WithdrawOutcome.NOT_FOUND
            if row.flag_bits & rules.MSG_FLAG_WITHDRAWN:
                return WithdrawOutcome.ALREADY
            await conn.execute(update(c2c_messages).where(*key).values(
                flag_bits=row.flag_bits | rules.MSG_FLAG_WITHDRAWN, msg_body=[],
                cloud_custom_data=""))
            if row.counts_unread and from_account != to_account:
                await conn.execute(update(c2c_reads).where(
                    _R.sdkappid == sdkappid, _R.account == to_account,
                    _R.peer == from_account, _R.read_time < time, _R.unread > 0,
                ).values(unread=_R.unread - 1))
        return WithdrawOutcome.WITHDRAWN

    async def set_read(self, sdkappid: int, account: str, peer: str, read_time: int) -> None:
        """Messages from ``peer`` up to ``read_time`` are read; the counter becomes the
        number of counted messages after it."""
        a, b = rules.pair(account, peer)
        async with self.db.write() as conn:
            unread = 0
            if account != peer:
                unread = (await conn.execute(select(func.count()).select_from(c2c_messages)
                                             .where(_M.sdkappid == sdkappid, _M.user_a == a,
                                                    _M.user_b == b,
                                                    _M.msg_time > read_time,
                                                    _M.from_account == peer,
                                                    _M.counts_unread.is_(True),
                                                    _M.flag_bits == 0))).scalar_one()
            upsert: Any = self._dialect.insert(c2c_reads).values(
                sdkappid=sdkappid, account=account, peer=peer, read_time=read_time,
                unread=unread)
            await conn.execute(upsert.on_conflict_do_update(
                index_elements=[_R.sdkappid, _R.account, _R.peer],
                set_={"read_time": read_time, "unread": unread}))

    async def unread_total(self, sdkappid: int, account: str) -> int:
        async with self.db.read() as conn:
            return int((await conn.execute(_UNREAD_ALL, {"app": sdkappid,
                                                         "account": account})).scalar())

    async def unread_of(self, sdkappid: int, account: str,
                        peers: Sequence[str]) -> dict[str, int]:
        """Unread count per peer (0 for a conversation with none)."""
        if not peers:
            return {}
        async with self.db.read() as conn:
            rows = await conn.execute(_UNREAD_OF, {"app": sdkappid, "account": account,
                                                   "peers": list(peers)})
            found = {r.peer: r.unread for r in rows}
        return {p: int(found.get(p, 0)) for p in peers}

    async def delete_sent_before(self, sdkappid: int, before: int, *,
                                 limit: int = 10_000) -> int:
        """Retention (``messaging/retention.py``): delete up to ``limit`` of the app's
        messages sent before ``before``; returns how many went. Unread counters are left as
        they are (the next ``set_read`` recounts from what is kept)."""
        key = (_M.sdkappid, _M.user_a, _M.user_b, _M.msg_time, _M.msg_seq, _M.msg_random)
        doomed = select(*key).where(_M.sdkappid == sdkappid,
                                    _M.msg_time < before).limit(limit)
        async with self.db.write() as conn:
            result = await conn.execute(delete(c2c_messages).where(tuple_(*key).in_(doomed)))
            return int(result.rowcount or 0)
