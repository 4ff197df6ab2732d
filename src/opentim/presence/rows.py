"""Row encoding and argument checks shared by the presence backends."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from opentim.domain.marks import is_valid_mark
from opentim.presence.cursor import MAX_CAP
from opentim.presence.errors import InvalidMarkError


class _Row(msgspec.Struct):
    # Field order is the wire order of a get_members MemberList item.
    Member_Account: str
    JoinTime: int
    NickName: str
    Avatar: str


_row_encoder = msgspec.json.Encoder()


def encode_row(account: str, join_time: float, nick: str, avatar: str) -> bytes:
    """The JSON bytes of one get_members row; JoinTime is whole seconds."""
    return _row_encoder.encode(_Row(account, int(join_time), nick, avatar))


def join_rows(rows: Iterable[bytes]) -> bytes:
    return b"[" + b",".join(rows) + b"]"


def check_mark(mark: int) -> int:
    """A store's guard: callers validate marks first (``domain.marks.check_mark``), so
    this only stops a caller's bug from reaching the store's state."""
    if not is_valid_mark(mark):
        raise InvalidMarkError(mark)
    return mark


def merge_items(items: Sequence[tuple[str, Sequence[int]]]) -> dict[str, list[int]]:
    """Validate marks and merge repeated accounts, keeping first-seen order."""
    merged: dict[str, list[int]] = {}
    for account, marks in items:
        dst = merged.setdefault(account, [])
        for m in marks:
            if not is_valid_mark(m):  # one call per mark: this runs for every mark set
                raise InvalidMarkError(m)
            if m not in dst:
                dst.append(m)
    return merged


def check_page_args(limit: int, cap: int) -> None:
    if limit <= 0:
        raise ValueError("limit must be positive")
    if not 0 < cap <= MAX_CAP:
        raise ValueError(f"cap must be in 1..{MAX_CAP}")
