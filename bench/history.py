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
    a, b = sorted(pair)  # the table's key holds the conversation's accounts in order
    for k in range(first, first + count):
        body = BODY % f"history message {k}"
        yield (sdkappid, a, b, newest - k // 10, k + 1, (k * 2654435761) % (1 << 32),
               pair[k % 2], body, "", 0, True, True)


def other_rows(sdkappid: int, count: int, span: int,
               newest: int) -> Iterator[tuple[object, ...]]:
    for k in range(count):
        a, b = f"bench_h_o{k % 1000:03d}", "bench_h_p"
        body = BODY % f"other message {k}"
        yield (sdkappid, a, b, newest - (k * 7919) % span, k + 1,
               (k * 2654435761) % (1 << 32), (a, b)[k % 2], body, "", 0, True, True)


def fill(db_url: str, sdkappid: int, pair: tuple[str, str], *, first: int, count: int,
         newest: int, others: int = 0) -> None:
    """Insert messages ``first`` .. ``first + count - 1`` of the conversation, and
    ``others`` of other conversations over the seconds those span; on PostgreSQL, ANALYZE
    the table then (as autovacuum would within a minute of such a write)."""
    span = max(1, (first + count) // 10)
    # In key order: B-tree inserts in order are several times faster than scattered ones.
    records = sorted(itertools.chain(rows(sdkappid, pair, first, count, newest),
                                     other_rows(sdkappid, others, span, newest)),
                     key=lambda r: r[:6])
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


async def _copy(db_url: str, records: list[tuple[object, ...]]) -> None:
    import asyncpg

    conn = await asyncpg.connect(db_url, timeout=30)
    try:
        for start in range(0, len(records), CHUNK):
            await conn.copy_records_to_table("c2c_messages", columns=list(COLUMNS),
                                             records=records[start:start + CHUNK])
        await conn.execute("ANALYZE c2c_messages")
    finally:
        await conn.close()
