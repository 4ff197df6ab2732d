"""The opaque get_members cursor (``NextTimestamp``).

A paging sequence must (a) resume strictly below the last member served, even when many
members joined in the same second, and (b) stop after ``cap`` members in total. So the
cursor carries both the join sequence of the last member served and how many members the
sequence has served so far:

    cursor = last_seq << SERVED_BITS | served

``last_seq >= 1``, so a cursor is always a positive integer and 0 stays free for "done".
It stays below 2**53 (exact in JavaScript / float64 JSON parsers) while a group has seen
fewer than 2**37 (~137 billion) joins.
"""

from __future__ import annotations

from opentim.presence.errors import InvalidCursorError

SERVED_BITS = 16
MAX_CAP = (1 << SERVED_BITS) - 1
_SERVED_MASK = MAX_CAP


def encode_cursor(last_seq: int, served: int) -> int:
    return (last_seq << SERVED_BITS) | served


def decode_cursor(cursor: int) -> tuple[int, int]:
    """``(last_seq, served)``; raises ValueError for a cursor no page returned."""
    if cursor <= 0:
        raise InvalidCursorError(f"invalid cursor {cursor}")
    last_seq, served = cursor >> SERVED_BITS, cursor & _SERVED_MASK
    if last_seq == 0:
        raise InvalidCursorError(f"invalid cursor {cursor}")
    return last_seq, served


def page_window(cursor: int, limit: int, cap: int) -> tuple[int | None, int, int]:
    """``(below, served, take)`` for a page request.

    ``below``: only members with a join sequence strictly below it (None = no bound);
    ``served``: members the sequence returned before this page; ``take``: rows wanted
    now (0 when the cap is already reached).
    """
    if cursor == 0:
        return None, 0, min(limit, cap)
    below, served = decode_cursor(cursor)
    return below, served, max(0, min(limit, cap - served))


def next_cursor(last_seq: int, served: int, taken: int, more: bool, cap: int) -> int:
    """The cursor after a page that returned ``taken`` rows ending at ``last_seq``.

    ``more``: whether another visible member exists below ``last_seq``.
    """
    total = served + taken
    if not more or taken == 0 or total >= cap:
        return 0
    return encode_cursor(last_seq, total)
