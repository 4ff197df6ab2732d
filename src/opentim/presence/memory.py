"""In-process presence store.

SINGLE PROCESS ONLY: the state lives in this process's memory, so two server processes
would each see only their own connections and hand out clashing join sequences. Run
more than one process with ``RedisPresenceStore``.

Every method is a coroutine that never awaits, so each call is atomic under asyncio.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from opentim.domain.marks import (
    DEFAULT_MARK500_TTL,
    MARK_ALWAYS_ONLINE,
    MARK_HIDDEN,
    MARK_LIMITS,
    MarkLimits,
    broken_limit,
)
from opentim.domain.online import LIST_CAP, PAGE_SIZE, RECOVER_WINDOW
from opentim.presence.backend import StoreBase
from opentim.presence.connections import MemoryConnections
from opentim.presence.cursor import next_cursor, page_window
from opentim.presence.errors import MarkLimitError
from opentim.presence.rows import check_mark, check_page_args, encode_row, join_rows, merge_items
from opentim.presence.seqlist import SeqList
from opentim.presence.types import (
    Joined,
    LeaseLostHook,
    MarkedMember,
    MarkResult,
    Offline,
    OfflineHook,
    Page,
    Profiles,
)

_EMPTY = Page(b"[]", 0, 0)


class _Entry:
    """One online member. ``until500`` is 0.0 unless it holds mark 500."""

    __slots__ = ("account", "marks", "nconn", "row", "seq", "until500")

    def __init__(self, account: str, seq: int, row: bytes) -> None:
        self.account = account
        self.seq = seq
        self.row = row
        self.nconn = 0
        self.marks: set[int] | None = None  # None saves a set per unmarked member
        self.until500 = 0.0

    def online(self, now: float) -> bool:
        return self.nconn > 0 or self.until500 > now


class _Group:
    __slots__ = ("by_account", "conns", "interrupted", "marks", "min500", "next_seq", "order")

    def __init__(self) -> None:
        self.next_seq = 1
        self.by_account: dict[str, _Entry] = {}
        self.conns: dict[str, _Entry] = {}
        self.order: SeqList[_Entry] = SeqList()
        self.marks: dict[int, SeqList[_Entry]] = {}  # only non-empty indexes
        # A lower bound of the earliest mark-500 expiry: lets reads skip the expiry scan.
        self.min500 = math.inf
        # account -> when a heartbeat interruption took it offline (for HeartbeatRecover).
        # Oldest first as callers' clocks move forward (a record is re-inserted at the
        # end), so stale ones are trimmed from the front: it holds about one window.
        self.interrupted: dict[str, float] = {}


class MemoryPresenceStore(StoreBase):
    """Presence kept in this process's memory; for a single server process only.

    Built with the same options as the Redis store (see ``StoreBase``); it has no lease
    to lose, so ``on_lease_lost`` is never called. ``limits`` and ``recover_window`` are
    the product's (``opentim.domain``) unless a test passes others.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        sweep_interval: float = 5.0,
        background: bool = True,
        on_offline: OfflineHook | None = None,
        on_lease_lost: LeaseLostHook | None = None,
        limits: MarkLimits = MARK_LIMITS,
        recover_window: float = RECOVER_WINDOW,
    ) -> None:
        super().__init__(clock=clock, sweep_interval=sweep_interval, background=background,
                         on_offline=on_offline, on_lease_lost=on_lease_lost)
        self._limits = limits
        self._recover_window = recover_window
        self._groups: dict[tuple[int, str], _Group] = {}
        self._connections = MemoryConnections()

    async def start(self) -> None:
        # Reads filter lapsed marks 500 themselves; the sweep removes them and turns them
        # into offline reports.
        self._start_background()

    async def close(self) -> None:
        await self._stop_background()

    # --- internal state changes (shared by the public methods) ----------------------

    def _new_entry(self, g: _Group, account: str, row: bytes) -> _Entry:
        e = _Entry(account, g.next_seq, row)
        g.next_seq += 1
        g.by_account[account] = e
        g.order.append(e)
        return e

    def _add_mark(self, g: _Group, e: _Entry, mark: int) -> None:
        if e.marks is None:
            e.marks = set()
        if mark not in e.marks:
            e.marks.add(mark)
            g.marks.setdefault(mark, SeqList()).insert(e)

    def _drop_mark(self, g: _Group, e: _Entry, mark: int) -> None:
        if e.marks is None or mark not in e.marks:
            return
        e.marks.discard(mark)
        if not e.marks:
            e.marks = None
        idx = g.marks[mark]
        idx.remove(e)
        if not idx:
            del g.marks[mark]
        if mark == MARK_ALWAYS_ONLINE:
            e.until500 = 0.0

    def _purge(self, g: _Group, e: _Entry) -> None:
        """Take ``e`` off the list and out of every mark index."""
        for m in list(e.marks or ()):
            self._drop_mark(g, e, m)
        g.order.remove(e)
        del g.by_account[e.account]

    def _remember_interruption(self, g: _Group, account: str, now: float) -> None:
        g.interrupted.pop(account, None)
        g.interrupted[account] = now
        _trim_interruptions(g, now, self._recover_window)

    def _expire_due(self, g: _Group, now: float) -> list[str]:
        """Apply lapsed marks 500; returns the members that went offline by it."""
        if now < g.min500:
            return []
        offline: list[str] = []
        earliest = math.inf
        idx = g.marks.get(MARK_ALWAYS_ONLINE)
        for e in list(idx.below(None)) if idx else ():
            if e.until500 > now:
                earliest = min(earliest, e.until500)
            elif e.nconn:
                self._drop_mark(g, e, MARK_ALWAYS_ONLINE)
            else:
                self._purge(g, e)
                offline.append(e.account)
        g.min500 = earliest
        return offline

    # --- connections -----------------------------------------------------------------

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
        g = self._groups.get((app, group))
        if g is None:
            g = self._groups[(app, group)] = _Group()
        if conn_id in g.conns:
            return Joined.NO_CHANGE
        outcome = Joined.NO_CHANGE
        e = g.by_account.get(account)
        lapsed = False
        if e is not None and not e.online(now):
            self._purge(g, e)  # listed only by a lapsed 500: it is offline already
            e, lapsed = None, True
        if e is None:
            e = self._new_entry(g, account, encode_row(account, now, nick, avatar))
            lost_at = g.interrupted.pop(account, None)
            if lapsed:
                outcome = Joined.AFTER_LAPSE
            elif lost_at is not None and lost_at >= now - self._recover_window:
                outcome = Joined.RECOVERED
            else:
                outcome = Joined.ONLINE
        e.nconn += 1
        g.conns[conn_id] = e
        return outcome

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
        g = self._groups.get((app, group))
        e = g.conns.get(conn_id) if g else None
        if g is None or e is None or e.account != account:
            return False
        del g.conns[conn_id]
        e.nconn -= 1
        if e.nconn:
            return False
        if e.until500 > now:
            # "always online": stays listed, but only mark 500 survives the leave
            for m in list(e.marks or ()):
                if m != MARK_ALWAYS_ONLINE:
                    self._drop_mark(g, e, m)
            return False
        self._purge(g, e)
        if interrupted:
            self._remember_interruption(g, account, now)
        return True

    # --- reads -----------------------------------------------------------------------

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
        check_page_args(limit, cap)
        if mark is not None:
            check_mark(mark)
        below, served, take = page_window(cursor, limit, cap)
        g = self._groups.get((app, group))
        if g is None or take == 0:
            return _EMPTY
        src = g.order if mark is None else g.marks.get(mark)
        if src is None:
            return _EMPTY
        hide600 = mark is None and MARK_HIDDEN in g.marks
        want500 = mark == MARK_ALWAYS_ONLINE
        if not hide600 and now < g.min500:
            # Fast path: no hidden members and no lapsed 500, so every entry is listed and
            # a page is a slice of the order index.
            entries = src.take_below(below, take + 1)
            more = len(entries) > take
            del entries[take:]
            last = entries[-1].seq if entries else 0
            return Page(join_rows([e.row for e in entries]),
                        next_cursor(last, served, len(entries), more, cap), len(entries))
        rows: list[bytes] = []
        last = 0
        more = False
        for e in src.below(below):
            if not (e.nconn or e.until500 > now):
                continue
            if hide600 and e.marks and MARK_HIDDEN in e.marks:
                continue
            if want500 and e.until500 <= now:
                continue
            if len(rows) == take:
                more = True
                break
            rows.append(e.row)
            last = e.seq
        return Page(join_rows(rows), next_cursor(last, served, len(rows), more, cap), len(rows))

    def remembered_interruptions(self, app: int, group: str) -> int:
        """How many heartbeat interruptions the group keeps for HeartbeatRecover: about one
        RECOVER_WINDOW's worth (trimmed on leave, emptied by the sweep), never all ever."""
        g = self._groups.get((app, group))
        return 0 if g is None else len(g.interrupted)

    async def count(self, app: int, group: str, *, now: float) -> int:
        g = self._groups.get((app, group))
        if g is None:
            return 0
        n = len(g.by_account)
        if now >= g.min500 and (idx := g.marks.get(MARK_ALWAYS_ONLINE)):
            n -= sum(1 for e in idx.below(None) if not e.online(now))
        return n

    # --- marks -----------------------------------------------------------------------

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
        merged = merge_items(items)
        g = self._groups.get((app, group))
        if g is None:
            g = self._groups[(app, group)] = _Group()
        went_offline = self._expire_due(g, now)
        # After _expire_due every listed entry is online.
        plan = [
            (a, g.by_account.get(a), ms)
            for a, ms in merged.items()
            if a in g.by_account or (allow_offline_500 and MARK_ALWAYS_ONLINE in ms)
        ]
        adds: dict[int, int] = {}
        for _, e, ms in plan:
            for m in ms:
                if e is None or e.marks is None or m not in e.marks:
                    adds[m] = adds.get(m, 0) + 1
        limits = self._limits
        broken = broken_limit(
            {m for m in g.marks if m >= limits.min_custom},
            adds,
            lambda m: len(g.marks[m]) if m in g.marks else 0,
            limits,
        )
        if broken is not None:
            # went_offline: removed all the same, so the caller reports them
            raise MarkLimitError(*broken, went_offline=went_offline)
        until = now + mark500_ttl
        result = MarkResult(went_offline=went_offline)
        for a, e, ms in plan:
            if e is None:
                nick, avatar = (profiles or {}).get(a, ("", ""))
                e = self._new_entry(g, a, encode_row(a, now, nick, avatar))
                g.interrupted.pop(a, None)  # online again: a later join is no recovery
                result.went_online.append(a)
            for m in ms:
                self._add_mark(g, e, m)
            if MARK_ALWAYS_ONLINE in ms:
                e.until500 = until
                g.min500 = min(g.min500, until)
            result.members.append(MarkedMember(a, tuple(sorted(e.marks or ()))))
        return result

    async def delete_marks(
        self,
        app: int,
        group: str,
        items: Sequence[tuple[str, Sequence[int]]],
        *,
        now: float,
    ) -> MarkResult:
        merged = merge_items(items)
        g = self._groups.get((app, group))
        if g is None:
            return MarkResult()
        result = MarkResult(went_offline=self._expire_due(g, now))
        for a, ms in merged.items():
            e = g.by_account.get(a)
            if e is None:
                continue
            for m in ms:
                self._drop_mark(g, e, m)
            if e.online(now):
                result.members.append(MarkedMember(a, tuple(sorted(e.marks or ()))))
            else:  # its 500 was what kept it listed
                self._purge(g, e)
                result.members.append(MarkedMember(a, ()))
                result.went_offline.append(a)
        return result

    # --- lifecycle -------------------------------------------------------------------

    async def drop_group(self, app: int, group: str) -> None:
        self._groups.pop((app, group), None)

    async def sweep(self, now: float) -> list[Offline]:
        out: list[Offline] = []
        for (app, group), g in list(self._groups.items()):
            for a in self._expire_due(g, now):
                out.append(Offline(app, group, a, "mark500_expired"))
            if g.interrupted:
                _trim_interruptions(g, now, self._recover_window)
        return out


def _trim_interruptions(g: _Group, now: float, window: float) -> None:
    """Forget interruptions older than the recovery window (they are oldest first)."""
    stale = g.interrupted
    cutoff = now - window
    while stale:
        account, at = next(iter(stale.items()))
        if at >= cutoff:
            return
        del stale[account]
