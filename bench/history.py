"""One-to-one history for the admin_getroammsg row, written straight into ``c2c_messages``.

A conversation's messages are rows of the table OpenTIM's own sends write
(src/opentim/storage/schema.py), inserted in bulk through each database's fast path
(SQLite: executemany in one transaction; PostgreSQL: COPY), so that a million of them take
seconds instead of a million sendmsg calls. Message k of the measured conversation (k = 0
the newest) is sent at ``newest - k // 10`` (ten a second), alternately by either account;
a later fill with a higher ``first`` adds older messages behind the existing ones, leaving
the newest page, and so the row's answer, as it was. ``others`` messages of 1,000 other
conversations go in with them, spread over the same seconds up to the newest: a read that
walked the time index instead of the conversation's key would cross them.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Iterator

COLUMNS = ("sdkappid", "user_a", "user_b", "msg_time", "msg_seq", "msg_random",
           "from_account", "msg_body", "cloud_custom_data", "flag_bits", "counts_unread",
           "sender_roam")
CHUNK = 50_000
BODY = '[{"MsgType":"TIMTextElem","MsgContent":{"Text":"%s"}}]'  # JSON, as stored


def rows(sdkappid: int, pair: tuple[str, str], first: int, count: int,
         newest: int) -> Iterator[tuple[object, ...]]:
    """The conversation's messages ``first`` .. ``first + count - 1``, in key order
    (oldest second first; within a second, by MsgSeq)."""
    a, b = sorted(pair)  # the table's key holds the conversation's accounts in order
    last = first + count - 1
    for second in range(last // 10, first // 10 - 1, -1):
        for k in range(max(first, second * 10), min(last, second * 10 + 9) + 1):
            body = BODY % f"history message {k}"
            yield (sdkappid, a, b, newest - second, k + 1, (k * 2654435761) % (1 << 32),
                   pair[k % 2], body, "", 0, True, True)


def other_rows(sdkappid: int, count: int, span: int,
               newest: int) -> Iterator[Iterator[tuple[object, ...]]]:
    """``count`` messages of 1,000 other conversations: one iterator per conversation,
    each in key order (a conversation's rows are sorted in memory, a thousandth of the
    whole at a time)."""
    for conversation in range(min(count, 1000)):
        yield _other_conversation(sdkappid, conversation, count, span, newest)


def _other_conversation(sdkappid: int, conversation: int, count: int, span: int,
                        newest: int) -> Iterator[tuple[object, ...]]:
    a, b = f"bench_h_o{conversation:03d}", "bench_h_p"
    keyed = sorted((newest - (k * 7919) % span, k) for k in range(conversation, count, 1000))
    for msg_time, k in keyed:
        yield (sdkappid, a, b, msg_time, k + 1, (k * 2654435761) % (1 << 32), (a, b)[k % 2],
               BODY % f"other message {k}", "", 0, True, True)


def fill(db_url: str, sdkappid: int, pair: tuple[str, str], *, first: int, count: int,
         newest: int, others: int = 0) -> None:
    """Insert messages ``first`` .. ``first + count - 1`` of the conversation, and
    ``others`` of other conversations over the seconds those span; on PostgreSQL, ANALYZE
    the table then (as autovacuum would within a minute of such a write).

    Rows stream in key order (B-tree inserts in order are several times faster than
    scattered ones), never all in memory: 10M of them fit in a few hundred MB."""
    span = max(1, (first + count) // 10)
    conversations = [(tuple(sorted(pair)), rows(sdkappid, pair, first, count, newest))]
    conversations += [((f"bench_h_o{i:03d}", "bench_h_p"), it) for i, it in
                      enumerate(other_rows(sdkappid, others, span, newest))]
    conversations.sort(key=lambda c: c[0])  # disjoint key ranges: each one's rows in turn
    records = itertools.chain.from_iterable(it for _, it in conversations)
    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=30)
        try:
            with conn:
                insert = (f"INSERT INTO c2c_messages ({', '.join(COLUMNS)}) VALUES "
                          f"({', '.join('?' * len(COLUMNS))})")
                conn.executemany(insert, records)
            # Fold the write-ahead log back into the database, as a settled one would be.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return
    asyncio.run(_copy(db_url, records))


async def _copy(db_url: str, records: Iterator[tuple[object, ...]]) -> None:
    import asyncpg

    conn = await asyncpg.connect(db_url, timeout=30)
    try:
        while chunk := list(itertools.islice(records, CHUNK)):
            await conn.copy_records_to_table("c2c_messages", columns=list(COLUMNS),
                                             records=chunk)
        await conn.execute("ANALYZE c2c_messages")
    finally:
        await conn.close()
