"""Errors raised by presence stores (re-exported by ``opentim.presence``)."""

from __future__ import annotations

from opentim.domain.marks import (
    MARK_ALWAYS_ONLINE,
    MARK_HIDDEN,
    MIN_CUSTOM_MARK,
    LimitKind,
)


class PresenceError(Exception):
    """Base class of the errors a presence store raises on bad input."""


class InvalidMarkError(PresenceError, ValueError):
    """A mark that is neither custom (>= 1000) nor one of the special marks 500 / 600."""

    def __init__(self, mark: object) -> None:
        super().__init__(f"invalid mark {mark!r}: marks are >= {MIN_CUSTOM_MARK}, "
                         f"{MARK_ALWAYS_ONLINE} or {MARK_HIDDEN}")
        self.mark = mark


class InvalidCursorError(PresenceError, ValueError):
    """A page cursor that no page of this store could have returned."""


class MarkLimitError(PresenceError):
    """A set_marks call would exceed a per-group mark limit; no mark was applied.

    ``kind`` says which limit: ``"distinct_marks"`` (more than ``limit`` distinct marks
    >= 1000 in the group) or ``"members_per_mark"`` (mark ``mark`` would have more than
    ``limit`` members). ``went_offline``: members whose mark 500 had lapsed, removed before
    the limits were checked (the limits count the group without them). Nobody else will
    report them, so the caller announces them offline even though the call failed.
    """

    def __init__(
        self,
        kind: LimitKind,
        limit: int,
        mark: int | None,
        went_offline: list[str] | None = None,
    ) -> None:
        what = (
            f"more than {limit} distinct marks >= {MIN_CUSTOM_MARK} in the group"
            if kind == "distinct_marks"
            else f"more than {limit} members with mark {mark}"
        )
        super().__init__(what)
        self.kind = kind
        self.limit = limit
        self.mark = mark
        self.went_offline: list[str] = went_offline or []
