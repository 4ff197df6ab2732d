"""Group message history: sending (one message, now) and importing (many, with their times).

Every message takes the group's ``next_msg_seq``; the UPDATE that hands it out also takes
the group row's lock (see "membership writes" in members.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select, tuple_, update

from opentim import errors
from opentim.domain import imports
from opentim.storage.base import GroupMessage
from opentim.storage.database import Database
from opentim.storage.rows import GET_GROUP, GroupLock, group_key, message_values
from opentim.storage.schema import group_members, group_messages, groups


class SqlMessages:
    """The MessageStore on one database."""


    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock_group = GroupLock(db.dialect.locking(GET_GROUP))

    async def append(self, sdkappid: int, group_id: str, message: GroupMessage,
                     *, keep: bool, sender_must_be_member: bool) -> int | None:
        """Append one message now: returns its MsgSeq (see ``base.MessageStore``)."""
        try:
            async with self.db.write() as conn:
                # The UPDATE takes the group row lock and hands out the seq in one go.
                next_seq = (await conn.execute(
                    update(groups).where(*group_key(sdkappid, group_id))
                    .values(next_msg_seq=groups.c.next_msg_seq + 1,
                            last_msg_time=message.send_time)
                    .returning(groups.c.next_msg_seq)
                )).scalar()
                if next_seq is None:
                    raise errors.GroupNotFound(group_id=group_id)
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
                        message_values(sdkappid, group_id, seq, message)))
        except _NotAMember:
            return None
        return seq

    async def import_history(self, sdkappid: int, group_id: str,
                             messages: Sequence[GroupMessage], *,
                             now: int) -> list[int | None]:
        """Append messages with their own times, in one transaction; returns each MsgSeq
        (None: not taken, see ``imports.message_accepted``)."""
        async with self.db.write() as conn:
            group = await self._lock_group(conn, sdkappid, group_id)
            next_seq, last_time = group.next_msg_seq, group.last_msg_time
            seqs: list[int | None] = []
            rows = []
            for m in messages:
                if not imports.message_accepted(m.send_time, create_time=group.create_time,
                                                last_time=last_time, now=now):
                    seqs.append(None)
                    continue
                seqs.append(next_seq)
                rows.append(message_values(sdkappid, group_id, next_seq, m))
                next_seq, last_time = next_seq + 1, m.send_time
            if rows:
                await conn.execute(group_messages.insert(), rows)
                await conn.execute(
                    update(groups).where(*group_key(sdkappid, group_id))
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


    async def delete_sent_before(self, sdkappid: int, before: int, *,
                                 limit: int = 10_000) -> int:
        """Delete up to ``limit`` of the app's messages sent before ``before``; returns how
        many went (the caller repeats while it is ``limit``: short transactions)."""
        doomed = select(group_messages.c.sdkappid, group_messages.c.group_id,
                        group_messages.c.msg_seq).where(
            group_messages.c.sdkappid == sdkappid,
            group_messages.c.send_time < before).limit(limit)
        async with self.db.write() as conn:
            result = await conn.execute(delete(group_messages).where(
                tuple_(group_messages.c.sdkappid, group_messages.c.group_id,
                       group_messages.c.msg_seq).in_(doomed)))
            return int(result.rowcount or 0)


class _NotAMember(Exception):
    """Rolls back append when the sender must be, and is not, a member."""
