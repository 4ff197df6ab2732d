"""The presence store contract: who is online in an AVChatRoom / Community group.

"Online" here is the product's notion from protocol.md §0/§5: a member is online in a
group while it holds at least one connection to it, or while it holds a still-valid
mark 500 (robots and "always online" members), whichever is longer.

Everything that depends on time takes ``now`` (unix seconds, float) from the caller, so
the rules never read a clock and tests can inject time.

Semantics shared by every backend (the contract tests in ``tests/presence`` pin them):

* **Join sequence.** When an account becomes online it gets the group's next sequence
  number (strictly increasing per group, never reused while the group exists). Extra
  connections of an online account do not change it; a re-join after going offline gets
  a new, larger one. The list order is "newest join first" = descending sequence.
* **Rows.** Each online member has a pre-encoded JSON object, exactly
  ``{"Member_Account":..,"JoinTime":..,"NickName":..,"Avatar":..}``, built when it
  became online (``JoinTime = int(now)``); pages splice these bytes without decoding.
* **Leaving.** When the last connection leaves, the member goes offline and all its marks
  are cleared - unless it holds a mark 500 that is still valid: then it stays listed
  (same sequence, same row) and keeps only mark 500.
* **Heartbeat interruptions** are remembered by the store, not by a server process, so a
  user who timed out on one process and comes back through another within
  ``RECOVER_WINDOW`` is a recovery (``Joined.RECOVERED``). One is recorded when a leave
  flagged ``interrupted`` (or, with Redis, the sweep of a dead node's connections) takes
  the account offline, and it is forgotten at the account's next becoming-online by any
  path (a join, or mark 500 listing it), so a recovery always follows an interruption
  that was the account's last way offline.
* **Mark 500** is valid while ``now < until`` (``until = now_at_set + ttl``; setting it
  again refreshes ``until``). Expired 500s are filtered lazily by every read (reads never
  remove them) and removed by ``sweep``, by the next ``set_marks`` / ``delete_marks`` on
  the group, or by the account's own ``join``. Whichever removes a lapsed member reports
  it, exactly once: ``sweep`` as ``Offline(.., "mark500_expired")``, a mark call in
  ``went_offline`` (also on ``MarkLimitError``), a join as ``Joined.AFTER_LAPSE``. The
  caller owes the webhook an Offline for it; no later call reports it again.
* **Mark 600** hides a member from ``page(mark=None)``; it still counts in ``count`` and
  is listed by ``page(mark=600)``.
* **Mark limits** (checked on the state after expiring lapsed 500s): at most
  ``MAX_DISTINCT_MARKS`` distinct marks >= 1000 per group (500 and 600 don't count) and
  at most ``MAX_MEMBERS_PER_MARK`` members per mark (500 and 600 included). A call that
  would break either limit applies no mark and raises ``MarkLimitError`` (whose
  ``went_offline`` lists the lapsed 500s cleaned up first); the distinct-marks limit is
  checked first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, Protocol, runtime_checkable

import msgspec

from opentim.presence.cursor import MAX_CAP
from opentim.presence.errors import (
    InvalidCursorError,
    InvalidMarkError,
    MarkLimitError,
    PresenceError,
)

MARK_ALWAYS_ONLINE = 500
MARK_HIDDEN = 600
SPECIAL_MARKS = frozenset({MARK_ALWAYS_ONLINE, MARK_HIDDEN})
MIN_CUSTOM_MARK = 1000
MAX_DISTINCT_MARKS = 10
MAX_MEMBERS_PER_MARK = 1000
DEFAULT_MARK500_TTL = 3 * 86400.0
DEFAULT_PAGE_LIMIT = 500
DEFAULT_PAGE_CAP = 1000
# An account back online this soon (seconds, inclusive) after a heartbeat interruption
# took it offline has "recovered" (the webhook's HeartbeatRecover), not joined afresh.
RECOVER_WINDOW = 120.0

Profiles = Mapping[str, tuple[str, str]]
"""account -> (nick, avatar), used for rows of accounts that become online via mark 500."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the online list.

    ``rows`` is a complete JSON array (``b"[...]"``) ready to embed in a response;
    ``next_cursor`` is 0 when the paging sequence is complete; ``count`` = rows in it.
    """

    rows: bytes
    next_cursor: int
    count: int


class Joined(Enum):
    """What ``join`` did to the account's place in the list.

    Every value but ``NO_CHANGE`` means the account became online (a fresh sequence and
    row); the others say how the caller should announce it.
    """

    NO_CHANGE = 0
    """Already online (another connection, or a valid mark 500), or a duplicate conn_id."""
    ONLINE = 1
    """Became online: a plain join."""
    RECOVERED = 2
    """Became online within ``RECOVER_WINDOW`` after a heartbeat interruption took it
    offline (HeartbeatRecover)."""
    AFTER_LAPSE = 3
    """Became online; until now a lapsed mark 500 still listed it, which this join removed.
    Nothing reported it offline yet (the sweep no longer will): announce its Offline,
    as for a swept ``mark500_expired``, before the Online."""

    @property
    def became_online(self) -> bool:
        return self is not Joined.NO_CHANGE


@dataclass(frozen=True, slots=True)
class MarkedMember:
    """An account a mark call succeeded for and ALL the marks it holds afterwards."""

    account: str
    marks: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MarkResult:
    """Outcome of set_marks / delete_marks / add_robots / del_robots.

    ``members``: accounts that were online (or were brought online by mark 500), in the
    order of the request, each with the full set of marks it holds after the call (sorted
    ascending). Offline / unknown accounts are left out; an empty list means the REST
    layer should FAIL the call.
    ``went_online``: accounts listed because of this call (mark 500 on an offline account).
    ``went_offline``: accounts no longer listed after this call - mark 500 deleted from an
    unconnected member, or any member of the group whose mark 500 lapsed (cleaned up here).
    A lapsed member that the call lists again with a new 500 is in both lists: it went
    offline (lapse) before it came back online (this call).
    """

    members: list[MarkedMember] = field(default_factory=list)
    went_online: list[str] = field(default_factory=list)
    went_offline: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Offline:
    """A member that ``sweep`` took offline, for the webhook layer.

    ``reason``: ``"mark500_expired"`` (its 500 lapsed and it had no connection) or
    ``"node_lost"`` (its last connection belonged to a server process that died).
    """

    app: int
    group: str
    account: str
    reason: Literal["mark500_expired", "node_lost"]


@runtime_checkable
class PresenceStore(Protocol):
    """Online member list, marks and robots of AVChatRoom / Community groups.

    ``app`` is the SDKAppID, ``group`` the GroupId; state is kept per (app, group).
    ``conn_id`` identifies one client connection and must be unique (per server node).
    All methods are coroutines; mutations are atomic per group.
    """

    async def start(self) -> None:
        """Prepare the store (load scripts, start background tasks). Call once."""

    async def close(self) -> None:
        """Stop background tasks and release resources. Idempotent."""

    async def join(
        self,
        app: int,
        group: str,
        account: str,
        conn_id: str,
        *,
        nick: str,
        avatar: str,
        now: float,
    ) -> Joined:
        """Register connection ``conn_id`` of ``account``; see ``Joined`` for the outcomes.

        A duplicate ``conn_id`` is a no-op (NO_CHANGE). An account already listed through a
        valid mark 500 keeps its sequence and row (NO_CHANGE).
        """
        ...

    async def leave(
        self,
        app: int,
        group: str,
        account: str,
        conn_id: str,
        *,
        now: float,
        interrupted: bool = False,
    ) -> bool:
        """Remove connection ``conn_id``; True if the account went offline.

        ``interrupted``: the connection timed out (no heartbeat). If that takes the account
        offline, the store remembers it for ``RECOVER_WINDOW`` seconds (see ``Joined``).
        Unknown connections (or one registered for another account) are a no-op (False).
        """
        ...

    async def page(
        self,
        app: int,
        group: str,
        *,
        cursor: int = 0,
        mark: int | None = None,
        limit: int = DEFAULT_PAGE_LIMIT,
        cap: int = DEFAULT_PAGE_CAP,
        now: float,
    ) -> Page:
        """One page of the online list, newest join first.

        ``cursor`` 0 starts a paging sequence; otherwise pass the previous ``next_cursor``.
        A sequence returns at most ``cap`` members in total and each member online for
        the whole sequence exactly once; members that join after the first page are not
        returned. ``mark=None`` hides mark-600 members; ``mark=m`` lists exactly the
        members holding ``m`` (for 500: a still-valid 500). Keep limit, cap and mark the
        same across one sequence.
        """
        ...

    async def count(self, app: int, group: str, *, now: float) -> int:
        """Exact number of online members, hidden (mark 600) members included."""
        ...

    async def is_online(self, app: int, group: str, account: str, *, now: float) -> bool:
        """Whether ``account`` is online in the group."""
        ...

    async def marks_of(
        self, app: int, group: str, accounts: Iterable[str], *, now: float
    ) -> dict[str, tuple[int, ...]]:
        """Marks (sorted) of those ``accounts`` that are online; offline ones are absent."""
        ...

    async def set_marks(
        self,
        app: int,
        group: str,
        items: Sequence[tuple[str, Sequence[int]]],
        *,
        now: float,
        profiles: Profiles | None = None,
        mark500_ttl: float = DEFAULT_MARK500_TTL,
        allow_offline_500: bool = True,
    ) -> MarkResult:
        """Add marks to online members; atomic, raises MarkLimitError / InvalidMarkError.

        A MarkLimitError applies no mark, but lapsed 500s are cleaned up before the limits
        are checked: the exception's ``went_offline`` lists them for the caller to report.

        An offline account whose marks include 500 (when ``allow_offline_500``) becomes
        online with a fresh sequence, ``JoinTime = int(now)`` and nick/avatar from
        ``profiles`` (default ""), and receives all its requested marks. Other offline
        accounts are skipped. Repeated accounts are merged.
        """
        ...

    async def delete_marks(
        self,
        app: int,
        group: str,
        items: Sequence[tuple[str, Sequence[int]]],
        *,
        now: float,
    ) -> MarkResult:
        """Remove marks from online members; removing 500 from an unconnected member
        takes it offline. Marks a member doesn't hold are ignored."""
        ...

    async def add_robots(
        self,
        app: int,
        group: str,
        accounts: Sequence[str],
        *,
        now: float,
        profiles: Profiles | None = None,
        ttl: float = DEFAULT_MARK500_TTL,
    ) -> MarkResult:
        """Set mark 500 on ``accounts`` without a connection (robots)."""
        ...

    async def del_robots(
        self, app: int, group: str, accounts: Sequence[str], *, now: float
    ) -> MarkResult:
        """Delete mark 500 from ``accounts`` (offline unless connected)."""
        ...

    async def drop_group(self, app: int, group: str) -> None:
        """Forget everything about the group (it was destroyed).

        Until then a group's sequence counter survives even while nobody is online (so
        cursors stay meaningful); that is a few hundred bytes per group ever used.
        """
        ...

    async def sweep(self, now: float) -> list[Offline]:
        """Housekeeping: expire lapsed marks 500 and (Redis) connections of dead nodes."""
        ...


__all__ = [
    "RECOVER_WINDOW",
    "InvalidCursorError",
    "InvalidMarkError",
    "Joined",
    "MarkLimitError",
    "MarkResult",
    "MarkedMember",
    "Offline",
    "Page",
    "PresenceError",
    "PresenceStore",
]


# --- helpers shared by the backends -------------------------------------------------


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
    # bool is an int subclass; True would otherwise pass as mark 1.
    if (
        not isinstance(mark, int)
        or isinstance(mark, bool)
        or not (mark >= MIN_CUSTOM_MARK or mark in SPECIAL_MARKS)
    ):
        raise InvalidMarkError(mark)
    return mark


def merge_items(items: Sequence[tuple[str, Sequence[int]]]) -> dict[str, list[int]]:
    """Validate marks and merge repeated accounts, keeping first-seen order."""
    merged: dict[str, list[int]] = {}
    for account, marks in items:
        dst = merged.setdefault(account, [])
        for m in marks:
            check_mark(m)
            if m not in dst:
                dst.append(m)
    return merged


def check_page_args(limit: int, cap: int) -> None:
    if limit <= 0:
        raise ValueError("limit must be positive")
    if not 0 < cap <= MAX_CAP:
        raise ValueError(f"cap must be in 1..{MAX_CAP}")


class RobotsViaMarks(ABC):
    """Robots are mark 500 without a connection (protocol.md §0); both backends share this."""

    @abstractmethod
    async def set_marks(
        self,
        app: int,
        group: str,
        items: Sequence[tuple[str, Sequence[int]]],
        *,
        now: float,
        profiles: Profiles | None = None,
        mark500_ttl: float = DEFAULT_MARK500_TTL,
        allow_offline_500: bool = True,
    ) -> MarkResult: ...

    @abstractmethod
    async def delete_marks(
        self,
        app: int,
        group: str,
        items: Sequence[tuple[str, Sequence[int]]],
        *,
        now: float,
    ) -> MarkResult: ...

    async def add_robots(
        self,
        app: int,
        group: str,
        accounts: Sequence[str],
        *,
        now: float,
        profiles: Profiles | None = None,
        ttl: float = DEFAULT_MARK500_TTL,
    ) -> MarkResult:
        items = [(a, (MARK_ALWAYS_ONLINE,)) for a in accounts]
        return await self.set_marks(
            app,
            group,
            items,
            now=now,
            profiles=profiles,
            mark500_ttl=ttl,
            allow_offline_500=True,
        )

    async def del_robots(
        self, app: int, group: str, accounts: Sequence[str], *, now: float
    ) -> MarkResult:
        items = [(a, (MARK_ALWAYS_ONLINE,)) for a in accounts]
        return await self.delete_marks(app, group, items, now=now)
