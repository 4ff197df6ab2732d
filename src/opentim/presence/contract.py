"""The presence store contract: who is online in an AVChatRoom / Community group.

"Online" here is the product's notion (``opentim.domain.online``): a member is online in
a group while it holds at least one connection to it, or while it holds a still-valid
mark 500 (robots and "always online" members), whichever is longer.

Everything that depends on time takes ``now`` (unix seconds, float) from the caller, so
the rules never read a clock and tests can inject time. The product's limits and windows
(``domain.marks.MARK_LIMITS``, ``domain.online.RECOVER_WINDOW``) are passed to a store
when it is built; it enforces them atomically.

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
  user who timed out on one process and comes back through another within the recovery
  window is a recovery (``Joined.RECOVERED``). One is recorded when a leave flagged
  ``interrupted`` (or, with Redis, the sweep of a dead node's connections) takes the
  account offline, and it is forgotten at the account's next becoming-online by any path
  (a join, or mark 500 listing it), so a recovery always follows an interruption that
  was the account's last way offline.
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
  ``max_distinct`` distinct custom marks per group (500 and 600 don't count) and at most
  ``max_per_mark`` members per mark (500 and 600 included). A call that would break
  either limit applies no mark and raises ``MarkLimitError`` (whose ``went_offline``
  lists the lapsed 500s cleaned up first); the distinct-marks limit is checked first.
* **Connections.** Apart from groups, every open gateway connection (in a group or not)
  is registered by the process holding it (``add_connection`` when it opens,
  ``remove_connection`` when it ends); ``connections`` lists each account's platforms,
  one per connection, across every process. A shared backend stops reporting the
  connections of a process whose lease ran out (it crashed) at once, and its sweep
  removes them; after a lost lease a process files its own connections again.
* **Background work.** Every backend is built with the same options (``clock``,
  ``sweep_interval``, ``background``, ``on_offline``, ``on_lease_lost``) and, once
  started, runs its own ``sweep`` every ``sweep_interval`` seconds, handing what it took
  offline to ``on_offline``. Only a shared backend has leases to lose.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from opentim.domain.marks import DEFAULT_MARK500_TTL
from opentim.domain.online import LIST_CAP, PAGE_SIZE
from opentim.presence.types import Joined, MarkResult, Offline, Page, Profiles


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
        offline, the store remembers it for the recovery window (see ``Joined``).
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
        limit: int = PAGE_SIZE,
        cap: int = LIST_CAP,
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

    async def add_connection(self, app: int, account: str, conn_id: str, *,
                             platform: str) -> None:
        """Register gateway connection ``conn_id`` of ``account`` (``platform``: the
        connection's, e.g. "iOS", "Web"). Registering a conn id again replaces it."""
        ...

    async def remove_connection(self, app: int, account: str, conn_id: str) -> None:
        """The connection ended; unknown connections are a no-op."""
        ...

    async def connections(self, app: int, accounts: Sequence[str], *, now: float
                          ) -> dict[str, list[str]]:
        """account -> the platform of each of its open connections, on every process;
        accounts without one are left out (``now``: which leases are still valid)."""
        ...

    async def sweep(self, now: float) -> list[Offline]:
        """Housekeeping now (the background task runs it too): expire lapsed marks 500
        and (shared stores) connections of dead nodes; returns who went offline."""
        ...
